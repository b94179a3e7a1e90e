//! Operations endpoints: liveness, readiness, metrics, and the request metrics
//! middleware.

use std::sync::OnceLock;
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

const METHODS: &[&str] = &[
    "GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS", "other",
];

fn route_index(route: Option<&str>) -> usize {
    route
        .and_then(|route| ROUTES.iter().position(|r| *r == route))
        .unwrap_or(ROUTES.len())
}

fn method_index(method: &axum::http::Method) -> usize {
    // Any other method counts as the last label, "other".
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn status_index(status: StatusCode) -> usize {
    let status = status.as_str();
    STATUS_LABELS
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUS_LABELS.len())
}

/// The request counter and latency histogram of every (route, method, status),
/// registered on first use: per request, recording is an index and two atomic
/// updates, not a key built, hashed and looked up in the registry.
pub struct RequestMetrics {
    series: Vec<OnceLock<(metrics::Counter, metrics::Histogram)>>,
}

impl RequestMetrics {
    const STATUSES: usize = STATUS_LABELS.len() + 1;

    pub fn new() -> RequestMetrics {
        let count = (ROUTES.len() + 1) * METHODS.len() * Self::STATUSES;
        RequestMetrics {
            series: (0..count).map(|_| OnceLock::new()).collect(),
        }
    }

    fn series(
        &self,
        route: usize,
        method: usize,
        status: usize,
    ) -> &(metrics::Counter, metrics::Histogram) {
        let index = (route * METHODS.len() + method) * Self::STATUSES + status;
        self.series[index].get_or_init(|| {
            let labels = [
                ("route", ROUTES.get(route).copied().unwrap_or("unmatched")),
                ("method", METHODS[method]),
                (
                    "status",
                    STATUS_LABELS.get(status).copied().unwrap_or("other"),
                ),
            ];
            (
                metrics::counter!(m::HTTP_REQUESTS_TOTAL, &labels),
                metrics::histogram!(m::HTTP_REQUEST_SECONDS, &labels),
            )
        })
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A route and method as metric labels: indices into `ROUTES` and `METHODS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Labels {
    route: usize,
    method: usize,
}

impl Labels {
    /// The labels of a route template of the router and a method.
    pub fn of(route: &str, method: &axum::http::Method) -> Labels {
        let route = route_index(Some(route));
        assert!(route < ROUTES.len(), "a route template of the router");
        Labels {
            route,
            method: method_index(method),
        }
    }
}

impl RequestMetrics {
    /// Counts one answered request and records how long it took.
    pub fn record(&self, labels: Labels, status: StatusCode, started: Instant) {
        let (requests, seconds) = self.series(labels.route, labels.method, status_index(status));
        requests.increment(1);
        seconds.record(started.elapsed().as_secs_f64());
    }
}

/// Counts requests and records latency by route template, method and status.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let labels = Labels {
        route: route_index(
            request
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
        ),
        method: method_index(request.method()),
    };
    let response = next.run(request).await;
    state
        .request_metrics
        .record(labels, response.status(), started);
    response
}
