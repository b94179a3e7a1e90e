//! Operations endpoints: liveness, readiness, metrics, and the request metrics
//! middleware.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use crate::metrics as m;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the store answers and every shard's writer is serving.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
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
    Ok(Json(json!({"status": "ready"})))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Counts requests and records latency by route template, method and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!(m::HTTP_REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(m::HTTP_REQUEST_SECONDS, &labels).record(started.elapsed().as_secs_f64());
    response
}
