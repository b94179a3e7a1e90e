//! Coupon campaigns: create (admin), read with live counts, issue a coupon
//! (through the campaign's actor), list own coupons.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::AppState;
use super::auth::{Admin, Caller};
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, Idempotency, Page, PageQuery, parse_time};
use super::products::{STOCK_MAX, check_name, check_per_user_limit, check_window};
use super::views::{CampaignBody, CouponBody};
use crate::domain::{CampaignId, CouponId, Discount, UnixMillis};
use crate::persistence::NewCampaign;

/// A fixed discount at most this many minor units (the largest price).
const FIXED_DISCOUNT_MAX: u64 = super::products::PRICE_MAX;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscountInput {
    kind: String,
    value: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    name: String,
    quantity: u64,
    per_user_limit: Option<u64>,
    discount: DiscountInput,
    starts_at: Option<String>,
    ends_at: Option<String>,
}

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
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(campaign),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<u64>,
) -> Result<Json<CampaignBody>, ApiError> {
    let campaign = state.engine.campaign(CampaignId(id)).await?;
    Ok(Json(campaign.into()))
}

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
