//! The HTTP API of API.md on axum: routes, authentication, extractors with
//! problem+json rejections, and the mapping of every error to one `ApiError`.
//! Handlers authenticate, parse into domain types, call the `Engine` and map the
//! reply; no business rule lives here.

mod auth;
mod campaigns;
mod error;
mod extract;
mod openapi;
mod ops;
mod orders;
mod products;
mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

pub use auth::{Auth, Caller};
pub use error::ApiError;
pub use openapi::ApiDoc;
pub use orders::placed as order_placed;

use crate::actors::Engine;
use crate::config::Settings;

/// A 201 reply with the new resource's `Location`. The body is written once
/// into a buffer as big as any resource of the API needs (axum's `Json`
/// starts at 128 bytes and copies as it grows) and the headers are set
/// directly: an order's reply is on the path of every order placed.
fn created<T: serde::Serialize>(location: String, body: T) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;

    let mut json = Vec::with_capacity(CREATED_BODY_BYTES);
    let (Ok(()), Ok(location)) = (
        serde_json::to_writer(&mut json, &body),
        HeaderValue::try_from(location),
    ) else {
        return ApiError::internal().into_response();
    };
    let mut response = axum::response::Response::new(axum::body::Body::from(json));
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::LOCATION, location);
    response
}

/// Room for a created resource's JSON: an order is ~280 bytes, a product
/// with a long name more.
const CREATED_BODY_BYTES: usize = 512;

/// Request bodies larger than this are refused with 413 (API.md).
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// What handlers share. axum clones the state for every request and several
/// times within one, so it is one `Arc`: one reference count to touch, not one
/// per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub engine: Arc<Engine>,
    pub auth: Auth,
    pub settings: Settings,
    pub metrics: PrometheusHandle,
    pub request_metrics: ops::RequestMetrics,
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    let document: Arc<str> = openapi::document(state.settings.max_quantity_per_order).into();
    Router::new()
        .route("/v1/products", post(products::create).get(products::list))
        .route(
            "/v1/products/{id}",
            get(products::get).patch(products::update),
        )
        .route("/v1/products/{id}/stock", post(products::change_stock))
        .route("/v1/orders", post(orders::create).get(orders::list))
        .route("/v1/orders/{id}", get(orders::get))
        .route("/v1/orders/{id}/pay", post(orders::pay))
        .route("/v1/orders/{id}/cancel", post(orders::cancel))
        .route("/v1/orders/{id}/return", post(orders::request_return))
        .route(
            "/v1/orders/{id}/return/complete",
            post(orders::complete_return),
        )
        .route("/v1/campaigns", post(campaigns::create))
        .route("/v1/campaigns/{id}", get(campaigns::get))
        .route("/v1/campaigns/{id}/coupons", post(campaigns::issue))
        .route("/v1/coupons", get(campaigns::list_coupons))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(
            "/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    document.to_string(),
                )
            }),
        )
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::track,
        ))
        .with_state(state)
}
