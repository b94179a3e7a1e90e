//! Products: create (admin), read with live counts, list.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::AppState;
use super::auth::Admin;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, Page, PageQuery, parse_time};
use super::views::ProductBody;
use crate::domain::{ProductId, UnixMillis};
use crate::persistence::NewProduct;

pub const NAME_CHARS_MAX: usize = 200;
pub const PRICE_MAX: u64 = 1_000_000_000_000;
pub const STOCK_MAX: u64 = 1_000_000_000;
pub const PER_USER_LIMIT_MAX: u64 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    name: String,
    price: u64,
    stock: u64,
    per_user_limit: Option<u64>,
    sale_starts_at: Option<String>,
    sale_ends_at: Option<String>,
}

pub fn check_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX {
        return Err(ApiError::invalid_body("name must be 1..=200 characters"));
    }
    Ok(())
}

pub fn check_per_user_limit(limit: Option<u64>) -> Result<(), ApiError> {
    if limit.is_some_and(|l| !(1..=PER_USER_LIMIT_MAX).contains(&l)) {
        return Err(ApiError::invalid_body(
            "per_user_limit must be null or 1..=1000000",
        ));
    }
    Ok(())
}

pub fn check_window(
    starts_at: Option<UnixMillis>,
    ends_at: Option<UnixMillis>,
) -> Result<(), ApiError> {
    if let (Some(start), Some(end)) = (starts_at, ends_at)
        && start >= end
    {
        return Err(ApiError::invalid_body(
            "the window must start before it ends",
        ));
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<CreateProduct>,
) -> Result<impl IntoResponse, ApiError> {
    check_name(&body.name)?;
    if body.price > PRICE_MAX {
        return Err(ApiError::invalid_body("price must be 0..=10^12"));
    }
    if body.stock > STOCK_MAX {
        return Err(ApiError::invalid_body("stock must be 0..=10^9"));
    }
    check_per_user_limit(body.per_user_limit)?;
    let sale_starts_at = parse_time("sale_starts_at", body.sale_starts_at.as_deref())?;
    let sale_ends_at = parse_time("sale_ends_at", body.sale_ends_at.as_deref())?;
    check_window(sale_starts_at, sale_ends_at)?;
    let new = NewProduct {
        name: body.name,
        price: body.price,
        stock: body.stock,
        per_user_limit: body.per_user_limit,
        sale_starts_at,
        sale_ends_at,
        created_at: UnixMillis::now(),
    };
    let product = ProductBody::from(state.engine.create_product(new).await?);
    let location = format!("/v1/products/{}", product.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(product),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<ProductBody>, ApiError> {
    let product = state.engine.product(ProductId(id)).await?;
    Ok(Json(product.into()))
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<ProductBody>>, ApiError> {
    let limit = page.limit()?;
    let after = page.cursor::<u64>()?.map(ProductId);
    let rows = state.engine.products(after, limit + 1).await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |(info, _)| info.id.to_string(),
        ProductBody::from,
    )))
}
