//! Orders: place (through the product's actor), read and list own, and the
//! transitions: pay, cancel, return, complete a return.

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery, Idempotency, OptionalJson, Page, PageQuery};
use super::views::{AsText, OrderBody};
use crate::actors::{Asker, OrderAction};
use crate::domain::{Order, OrderId, ProductId, Quantity, Refusal};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    #[schema(minimum = 0)]
    product_id: u64,
    /// 1..=`max_quantity_per_order` (default 10).
    #[schema(minimum = 1)]
    quantity: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PaymentOutcome {
    Success,
    Failure,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pay {
    /// What the simulated gateway answers; absent: success with probability
    /// `payment_success_rate`.
    outcome: Option<PaymentOutcome>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteReturn {
    /// true (default): the units go back to available stock; false: written off.
    restock: Option<bool>,
}

/// The order id in a path: a malformed one names no order, the same answer as
/// someone else's order.
fn order_id(text: &str) -> Result<OrderId, ApiError> {
    text.parse().map_err(|_| Refusal::OrderNotFound.into())
}

/// Moves the order for the caller and answers with it.
async fn act(
    state: &AppState,
    caller: Caller,
    id: &str,
    action: OrderAction,
) -> Result<Json<OrderBody>, ApiError> {
    let asker = Asker {
        user: caller.user,
        admin: caller.admin,
    };
    let order = state
        .engine
        .change_order(order_id(id)?, &asker, action)
        .await?;
    Ok(Json(order.into()))
}

/// Place an order: reserves `quantity` units for the caller.
#[utoipa::path(post, path = "/v1/orders", operation_id = "create_order", tag = "orders",
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "1..=255 visible ASCII characters; a retry with the same key and body returns the first answer")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Reserved: the order is PENDING_PAYMENT", body = OrderBody,
            headers(("Location" = String, description = "/v1/orders/{id}"))),
        (status = 400, description = "`malformed_json`, `invalid_idempotency_key`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`product_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`out_of_stock`, `purchase_limit_exceeded`, `sale_not_active`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_body`, `idempotency_key_reused`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
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
    Ok(placed(order))
}

/// The 201 of a placed order: the order and its `Location` (also the reply of
/// the designs flashstock is compared with, so all answer the same bytes).
pub fn placed(order: Order) -> axum::response::Response {
    const PREFIX: &str = "/v1/orders/";
    let mut location = String::with_capacity(PREFIX.len() + ulid::ULID_LEN);
    location.push_str(PREFIX);
    location.push_str(order.id.text(&mut [0u8; 64]));
    let body = OrderBody::from(order);
    super::created_with(location, |json| {
        body.write_json(json);
        Ok(())
    })
}

/// One of the caller's orders (any order, for an administrator).
#[utoipa::path(get, path = "/v1/orders/{id}", operation_id = "get_order", tag = "orders",
    params(("id" = String, Path, description = "An order id (ULID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The order", body = OrderBody),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found` (also for another user's order)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderBody>, ApiError> {
    let id = order_id(&id)?;
    let viewer = (!caller.admin).then_some(&caller.user);
    let order = state.engine.order(id, viewer).await?;
    Ok(Json(order.into()))
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/v1/orders", operation_id = "list_orders", tag = "orders",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Items per page (default 50)"),
        ("after" = Option<String>, Query, pattern = "^[0-9A-HJKMNP-TV-Z]{26}$", description = "The `next` cursor of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of orders", body = Page<OrderBody>),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
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

/// Pay for a reservation (simulated gateway).
#[utoipa::path(post, path = "/v1/orders/{id}/pay", operation_id = "pay_order", tag = "orders",
    params(("id" = String, Path, description = "An order id (ULID)")),
    request_body(content = Option<Pay>, description = "Optional"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "PAID, or PAYMENT_FAILED (the reservation is released)", body = OrderBody),
        (status = 400, description = "`malformed_json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`, `order_expired`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pay(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<Pay>,
) -> Result<Json<OrderBody>, ApiError> {
    let succeed = body.outcome.map(|o| matches!(o, PaymentOutcome::Success));
    act(&state, caller, &id, OrderAction::Pay { succeed }).await
}

/// Cancel an unpaid or paid (not yet shipped) order; its units return to stock.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", operation_id = "cancel_order", tag = "orders",
    params(("id" = String, Path, description = "An order id (ULID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "CANCELLED", body = OrderBody),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderBody>, ApiError> {
    act(&state, caller, &id, OrderAction::Cancel).await
}

/// Ask to return a delivered order.
#[utoipa::path(post, path = "/v1/orders/{id}/return", operation_id = "return_order", tag = "orders",
    params(("id" = String, Path, description = "An order id (ULID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "RETURN_REQUESTED", body = OrderBody),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn request_return(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OrderBody>, ApiError> {
    act(&state, caller, &id, OrderAction::Return).await
}

/// Complete a return: restock the units (default) or write them off.
#[utoipa::path(post, path = "/v1/orders/{id}/return/complete", operation_id = "complete_return", tag = "orders",
    params(("id" = String, Path, description = "An order id (ULID)")),
    request_body(content = Option<CompleteReturn>, description = "Optional"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "RETURNED", body = OrderBody),
        (status = 400, description = "`malformed_json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`order_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`invalid_state`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn complete_return(
    State(state): State<AppState>,
    admin: Admin,
    ApiPath(id): ApiPath<String>,
    OptionalJson(body): OptionalJson<CompleteReturn>,
) -> Result<Json<OrderBody>, ApiError> {
    let restock = body.restock.unwrap_or(true);
    act(
        &state,
        admin.0,
        &id,
        OrderAction::CompleteReturn { restock },
    )
    .await
}
