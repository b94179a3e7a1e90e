//! Request extractors whose rejections are problem+json, and the checks of
//! headers and query strings shared by handlers.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use serde::Deserialize;

use super::error::ApiError;
use crate::domain::{IdempotencyKey, UnixMillis};

/// A JSON object body with problem+json rejections: 415 without a JSON
/// `Content-Type`, 413 past the body limit, 400 for malformed JSON, 422 for
/// anything but an object of the expected shape (serde would also take a struct
/// from an array).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !has_json_content_type(&request) {
            return Err(unsupported_media_type());
        }
        let bytes = body_bytes(request, state).await?;
        parse_object(&bytes).map(ApiJson)
    }
}

fn has_json_content_type(request: &axum::extract::Request) -> bool {
    request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json)
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send JSON with Content-Type: application/json",
    )
}

async fn body_bytes<S: Send + Sync>(
    request: axum::extract::Request,
    state: &S,
) -> Result<axum::body::Bytes, ApiError> {
    axum::body::Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            ApiError::from(axum::extract::rejection::JsonRejection::from(rejection))
        })
}

fn parse_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    // An object that parses needs none of the error reporting below (axum's
    // `Json` tracks the path to every field in case one is wrong).
    if first == Some(&b'{')
        && let Ok(value) = serde_json::from_slice(bytes)
    {
        return Ok(value);
    }
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(ApiError::invalid_body("the body must be a JSON object"));
    }
    let axum::Json(value) = axum::Json::<T>::from_bytes(bytes)?;
    Ok(value)
}

/// `axum::extract::Path` with a 400 `invalid_parameter` rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query` with a 400 `invalid_parameter` rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// An optional JSON body: empty means `T::default()`; anything else must be
/// JSON (`Content-Type: application/json`) and is checked like `ApiJson`.
pub struct OptionalJson<T>(pub T);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json = has_json_content_type(&request);
        let bytes = body_bytes(request, state).await?;
        // No body, or JSON null, means "nothing to say".
        if bytes.is_empty() || bytes.trim_ascii() == b"null" {
            return Ok(OptionalJson(T::default()));
        }
        if !json {
            return Err(unsupported_media_type());
        }
        parse_object(&bytes).map(OptionalJson)
    }
}

/// Whether a `Content-Type` value names JSON (`application/json` or `+json`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

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
    /// Items per page, 1..=200 (default 50).
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
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

/// A page of a list; `next` is the cursor of the following page, or null.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// A page from `rows` fetched with `limit + 1`: the extra row only tells
    /// that there is a next page.
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
