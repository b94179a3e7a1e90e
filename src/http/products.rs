//! Products: create and change (admin), read with live counts (counts a view),
//! list, and stock corrections (admin).

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Admin;
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery, Page, PageQuery, parse_time};
use super::views::ProductBody;
use crate::domain::{ProductId, ProductPatch, UnixMillis};
use crate::persistence::NewProduct;

pub const NAME_CHARS_MAX: usize = 200;
pub const PRICE_MAX: u64 = 1_000_000_000_000;
pub const STOCK_MAX: u64 = 1_000_000_000;
pub const PER_USER_LIMIT_MAX: u64 = 1_000_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// Minor units of the deployment's currency.
    #[schema(minimum = 0, maximum = 1_000_000_000_000u64)]
    price: u64,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    stock: u64,
    /// null: no limit.
    #[schema(minimum = 1, maximum = 1_000_000)]
    per_user_limit: Option<u64>,
    /// RFC 3339.
    #[schema(format = DateTime)]
    sale_starts_at: Option<String>,
    #[schema(format = DateTime)]
    sale_ends_at: Option<String>,
}

/// A PATCH field: absent leaves it, null clears it, a value sets it.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000u64)]
    price: Option<u64>,
    /// null removes the limit.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 1_000_000)]
    per_user_limit: Option<Option<u64>>,
    /// null removes the start of the window.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    sale_starts_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, format = DateTime)]
    sale_ends_at: Option<Option<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockChange {
    /// Units to add (> 0) or remove from available stock (< 0); not zero.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    delta: i64,
}

pub fn check_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX {
        return Err(ApiError::invalid_body("name must be 1..=200 characters"));
    }
    Ok(())
}

fn check_price(price: u64) -> Result<(), ApiError> {
    if price > PRICE_MAX {
        return Err(ApiError::invalid_body("price must be 0..=10^12"));
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

/// Create a product.
#[utoipa::path(post, path = "/v1/products", operation_id = "create_product", tag = "products",
    request_body = CreateProduct,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ProductBody,
            headers(("Location" = String, description = "/v1/products/{id}"))),
        (status = 400, description = "`malformed_json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<CreateProduct>,
) -> Result<impl IntoResponse, ApiError> {
    check_name(&body.name)?;
    check_price(body.price)?;
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
    Ok(super::created(location, product))
}

/// A product with live counts; counts one view.
#[utoipa::path(get, path = "/v1/products/{id}", operation_id = "get_product", tag = "products",
    params(("id" = u64, Path, minimum = 0)),
    responses(
        (status = 200, description = "The product", body = ProductBody),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`product_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<ProductBody>, ApiError> {
    let product = state.engine.product(ProductId(id)).await?;
    Ok(Json(product.into()))
}

/// Products by id, ascending.
#[utoipa::path(get, path = "/v1/products", operation_id = "list_products", tag = "products",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Items per page (default 50)"),
        ("after" = Option<String>, Query, pattern = "^[0-9]{1,19}$", description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of products", body = Page<ProductBody>),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
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

/// Change a product's name, price, per-user limit or sale window.
#[utoipa::path(patch, path = "/v1/products/{id}", operation_id = "update_product", tag = "products",
    params(("id" = u64, Path, minimum = 0)),
    request_body = UpdateProduct,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changed product", body = ProductBody),
        (status = 400, description = "`malformed_json`, `invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`product_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_body`, `invalid_sale_window`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<UpdateProduct>,
) -> Result<Json<ProductBody>, ApiError> {
    if let Some(name) = &body.name {
        check_name(name)?;
    }
    if let Some(price) = body.price {
        check_price(price)?;
    }
    if let Some(limit) = body.per_user_limit {
        check_per_user_limit(limit)?;
    }
    let time = |field, value: Option<Option<String>>| {
        value.map(|v| parse_time(field, v.as_deref())).transpose()
    };
    let patch = ProductPatch {
        name: body.name,
        price: body.price,
        per_user_limit: body.per_user_limit,
        sale_starts_at: time("sale_starts_at", body.sale_starts_at)?,
        sale_ends_at: time("sale_ends_at", body.sale_ends_at)?,
    };
    let product = state.engine.update_product(ProductId(id), patch).await?;
    Ok(Json(product.into()))
}

/// Add or remove available stock.
#[utoipa::path(post, path = "/v1/products/{id}/stock", operation_id = "change_stock", tag = "products",
    params(("id" = u64, Path, minimum = 0)),
    request_body = StockChange,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The product after the change", body = ProductBody),
        (status = 400, description = "`malformed_json`, `invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`product_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`insufficient_stock`: available stock would go negative", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn change_stock(
    State(state): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<u64>,
    ApiJson(body): ApiJson<StockChange>,
) -> Result<Json<ProductBody>, ApiError> {
    if body.delta == 0 || body.delta.unsigned_abs() > STOCK_MAX {
        return Err(ApiError::invalid_body(
            "delta must be a non-zero integer within ±10^9",
        ));
    }
    let product = state.engine.adjust_stock(ProductId(id), body.delta).await?;
    Ok(Json(product.into()))
}
