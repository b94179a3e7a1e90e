//! Operations endpoints: liveness, readiness, metrics, and the request metrics
//! middleware.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::{ApiError, Problem};
use crate::metrics as m;

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: String,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

/// Readiness: the store answers and every shard is served.
#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "`unavailable`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    state
        .engine
        .store()
        .ping()
        .await
        .map_err(|_| ApiError::unavailable("the database does not answer"))?;
    let writers = state.engine.registry().writers();
    if !writers.iter().all(|w| w.is_serving()) {
        return Err(ApiError::unavailable(
            "a shard is recovering or shutting down",
        ));
    }
    Ok(Json(Status {
        status: "ready".into(),
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The statuses the API answers with, as static labels.
const STATUS_LABELS: &[&str] = &[
    "200", "201", "400", "401", "403", "404", "405", "409", "413", "415", "422", "500", "503",
];

/// The route templates of the router, as static labels: per request, the
/// labels are then found, not allocated.
const ROUTES: &[&str] = &[
    "/v1/products",
    "/v1/products/{id}",
    "/v1/products/{id}/stock",
    "/v1/orders",
    "/v1/orders/{id}",
    "/v1/orders/{id}/pay",
    "/v1/orders/{id}/cancel",
    "/v1/orders/{id}/return",
    "/v1/orders/{id}/return/complete",
    "/v1/campaigns",
    "/v1/campaigns/{id}",
    "/v1/campaigns/{id}/coupons",
    "/v1/coupons",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
];

fn route_label(path: Option<&MatchedPath>) -> &'static str {
    path.and_then(|p| ROUTES.iter().find(|r| **r == p.as_str()).copied())
        .unwrap_or("unmatched")
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts requests and records latency by route template, method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status();
    let status = status.as_str();
    let status: &'static str = STATUS_LABELS
        .iter()
        .find(|s| **s == status)
        .copied()
        .unwrap_or("other");
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(m::HTTP_REQUEST_SECONDS, &labels).record(started.elapsed().as_secs_f64());
    response
}
