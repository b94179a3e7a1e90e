//! Request extractors whose rejections are problem+json, and the checks of
//! headers and query strings shared by handlers.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use serde::Deserialize;

use super::error::ApiError;
use crate::domain::{IdempotencyKey, UnixMillis};

/// `axum::Json` with problem+json rejections (400, 413, 415, 422).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path` with a 400 `invalid_parameter` rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with a 400 `invalid_parameter` rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// The optional `Idempotency-Key` header, checked.
pub struct Idempotency(pub Option<IdempotencyKey>);

impl<S: Send + Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Idempotency(None));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|text| IdempotencyKey::parse(text).ok())
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1..=255 visible ASCII characters",
                )
            })?;
        Ok(Idempotency(Some(key)))
    }
}

/// Largest page of a list.
pub const PAGE_LIMIT_MAX: u32 = 200;
const PAGE_LIMIT_DEFAULT: u32 = 50;

/// `?limit=&after=` of list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<u32>,
    pub after: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<u32, ApiError> {
        let limit = self.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
            return Err(ApiError::invalid_parameter(
                "limit must be between 1 and 200",
            ));
        }
        Ok(limit)
    }

    /// The `after` cursor parsed as `T`.
    pub fn cursor<T: std::str::FromStr>(&self) -> Result<Option<T>, ApiError> {
        self.after
            .as_deref()
            .map(|text| {
                text.parse()
                    .map_err(|_| ApiError::invalid_parameter("after is not a cursor of this list"))
            })
            .transpose()
    }
}

/// A page: `{"items": [...], "next": cursor or null}`. Fetch one more row than
/// the limit to know whether there is a next page.
#[derive(Debug, serde::Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: u32,
        cursor: impl Fn(&R) -> String,
        view: impl Fn(R) -> T,
    ) -> Page<T> {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = if more { rows.last().map(&cursor) } else { None };
        Page {
            items: rows.into_iter().map(view).collect(),
            next,
        }
    }
}

/// An optional RFC 3339 time field of a request body.
pub fn parse_time(field: &'static str, text: Option<&str>) -> Result<Option<UnixMillis>, ApiError> {
    text.map(|t| {
        UnixMillis::parse_rfc3339(t)
            .ok_or_else(|| ApiError::invalid_body(format!("{field}: not an RFC 3339 time")))
    })
    .transpose()
}
