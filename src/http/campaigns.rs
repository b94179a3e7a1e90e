//! Coupon campaigns: create (admin), read with live counts, issue a coupon
//! (through the campaign's actor), list own coupons.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Admin, Caller};
use super::error::{ApiError, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery, Idempotency, Page, PageQuery, parse_time};
use super::products::{STOCK_MAX, check_name, check_per_user_limit, check_window};
use super::views::{CampaignBody, CouponBody};
use crate::domain::{CampaignId, CouponId, Discount, UnixMillis};
use crate::persistence::NewCampaign;

/// A fixed discount at most this many minor units (the largest price).
const FIXED_DISCOUNT_MAX: u64 = super::products::PRICE_MAX;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscountInput {
    /// `fixed` (value in minor units, 0..=10^12) or `percent` (value 1..=100).
    #[schema(pattern = "^(fixed|percent)$")]
    kind: String,
    #[schema(minimum = 0, maximum = 1_000_000_000_000u64)]
    value: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    quantity: u64,
    /// Coupons per user (default 1).
    #[schema(minimum = 1, maximum = 1_000_000)]
    per_user_limit: Option<u64>,
    discount: DiscountInput,
    #[schema(format = DateTime)]
    starts_at: Option<String>,
    #[schema(format = DateTime)]
    ends_at: Option<String>,
}

/// Create a coupon campaign.
#[utoipa::path(post, path = "/v1/campaigns", operation_id = "create_campaign", tag = "campaigns",
    request_body = CreateCampaign,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = CampaignBody,
            headers(("Location" = String, description = "/v1/campaigns/{id}"))),
        (status = 400, description = "`malformed_json`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_body`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    _: Admin,
    ApiJson(body): ApiJson<CreateCampaign>,
) -> Result<impl IntoResponse, ApiError> {
    check_name(&body.name)?;
    if body.quantity > STOCK_MAX {
        return Err(ApiError::invalid_body("quantity must be 0..=10^9"));
    }
    check_per_user_limit(body.per_user_limit)?;
    let discount = match body.discount.kind.as_str() {
        "fixed" if body.discount.value <= FIXED_DISCOUNT_MAX => {
            Discount::from_parts("fixed", body.discount.value)
        }
        "percent" => Discount::from_parts("percent", body.discount.value),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::invalid_body(
            "discount must be {\"kind\": \"fixed\", \"value\": 0..=10^12} \
             or {\"kind\": \"percent\", \"value\": 1..=100}",
        )
    })?;
    let starts_at = parse_time("starts_at", body.starts_at.as_deref())?;
    let ends_at = parse_time("ends_at", body.ends_at.as_deref())?;
    check_window(starts_at, ends_at)?;
    let new = NewCampaign {
        name: body.name,
        quantity: body.quantity,
        per_user_limit: body.per_user_limit.unwrap_or(1),
        discount,
        starts_at,
        ends_at,
        created_at: UnixMillis::now(),
    };
    let campaign = CampaignBody::from(state.engine.create_campaign(new).await?);
    let location = format!("/v1/campaigns/{}", campaign.id);
    Ok(super::created(location, campaign))
}

/// A campaign with live counts.
#[utoipa::path(get, path = "/v1/campaigns/{id}", operation_id = "get_campaign", tag = "campaigns",
    params(("id" = u64, Path, minimum = 0)),
    responses(
        (status = 200, description = "The campaign", body = CampaignBody),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`campaign_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<CampaignBody>, ApiError> {
    let campaign = state.engine.campaign(CampaignId(id)).await?;
    Ok(Json(campaign.into()))
}

/// Claim a coupon: first come, first served.
#[utoipa::path(post, path = "/v1/campaigns/{id}/coupons", operation_id = "issue_coupon", tag = "campaigns",
    params(("id" = u64, Path, minimum = 0),
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
            description = "1..=255 visible ASCII characters; a retry with the same key returns the first answer")),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Issued", body = CouponBody),
        (status = 400, description = "`invalid_parameter`, `invalid_idempotency_key`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`campaign_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`sold_out`, `issue_limit_reached`, `campaign_not_active`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<u64>,
) -> Result<impl IntoResponse, ApiError> {
    let coupon = state
        .engine
        .issue_coupon(CampaignId(id), caller.user, key)
        .await?;
    Ok((StatusCode::CREATED, Json(CouponBody::from(coupon))))
}

/// The caller's coupons, newest first.
#[utoipa::path(get, path = "/v1/coupons", operation_id = "list_coupons", tag = "campaigns",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Items per page (default 50)"),
        ("after" = Option<String>, Query, pattern = "^[0-9A-HJKMNP-TV-Z]{26}$", description = "The `next` cursor of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of coupons", body = Page<CouponBody>),
        (status = 400, description = "`invalid_parameter`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_coupons(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<CouponBody>>, ApiError> {
    let limit = page.limit()?;
    let before = page.cursor::<CouponId>()?;
    let rows = state
        .engine
        .user_coupons(&caller.user, before, limit + 1)
        .await?;
    Ok(Json(Page::from_rows(
        rows,
        limit,
        |coupon| coupon.id.to_string(),
        CouponBody::from,
    )))
}
