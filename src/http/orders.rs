//! Orders: place (through the product's actor), read own, list own.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, Idempotency, Page, PageQuery};
use super::views::OrderBody;
use crate::domain::{OrderId, ProductId, Quantity, Refusal};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    product_id: u64,
    quantity: u64,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Idempotency(key): Idempotency,
    ApiJson(body): ApiJson<CreateOrder>,
) -> Result<impl IntoResponse, ApiError> {
    let quantity = Quantity::new(body.quantity, state.settings.max_quantity_per_order)?;
    let order = state
        .engine
        .place_order(ProductId(body.product_id), caller.user, quantity, key)
        .await?;
    let location = format!("/v1/orders/{}", order.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(OrderBody::from(order)),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderBody>, ApiError> {
    // A malformed id names no order: the same answer as someone else's order.
    let id: OrderId = id.parse().map_err(|_| Refusal::OrderNotFound)?;
    let viewer = (!caller.admin).then_some(&caller.user);
    let order = state.engine.order(id, viewer).await?;
    Ok(Json(order.into()))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<OrderBody>>, ApiError> {
    let limit = page.limit()?;
    let before = page.cursor::<OrderId>()?;
    let rows = state
        .engine
        .user_orders(&caller.user, before, limit + 1)
        .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |order| order.id.to_string(),
        OrderBody::from,
    )))
}
