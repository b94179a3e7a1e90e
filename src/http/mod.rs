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

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::Method;
use axum::response::Response;
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
    created_with(location, |json| serde_json::to_writer(json, &body))
}

/// [`created`] with a body that `write` writes.
fn created_with(
    location: String,
    write: impl FnOnce(&mut Vec<u8>) -> serde_json::Result<()>,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;

    let mut json = Vec::with_capacity(CREATED_BODY_BYTES);
    let (Ok(()), Ok(location)) = (write(&mut json), HeaderValue::try_from(location)) else {
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

/// The API as served: `POST /v1/orders` is answered directly, everything else
/// by [`router`]. An order placed is the request a drop is made of, and one
/// arbiter serves every order of a hot product; for each, the router would
/// match its path, fill the request's extensions (a map allocated per request)
/// and clone its middleware stack. The direct route calls the same handler
/// (axum runs its extractors, as the router would), with the router's body
/// limit and request metrics, so its answers are the router's.
#[derive(Clone)]
pub struct Api {
    router: Router,
    state: AppState,
    place_order: ops::Labels,
}

impl Api {
    pub fn new(state: AppState) -> Api {
        Api {
            router: router(state.clone()),
            place_order: ops::Labels::of(PLACE_ORDER_PATH, &Method::POST),
            state,
        }
    }
}

const PLACE_ORDER_PATH: &str = "/v1/orders";

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl tower::Service<Request> for Api {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Answer {
        if request.method() == Method::POST && request.uri().path() == PLACE_ORDER_PATH {
            let state = self.state.clone();
            let labels = self.place_order;
            // The router's `DefaultBodyLimit`, which axum maps to the same 413.
            let request = request.map(|body| {
                axum::body::Body::new(http_body_util::Limited::new(body, BODY_BYTES_MAX))
            });
            return Box::pin(async move {
                let started = Instant::now();
                let response =
                    axum::handler::Handler::call(orders::create, request, state.clone()).await;
                state
                    .request_metrics
                    .record(labels, response.status(), started);
                Ok(response)
            });
        }
        Box::pin(self.router.call(request))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode, header};
    use clap::Parser as _;

    use super::*;
    use crate::domain::UnixMillis;
    use crate::persistence::NewProduct;

    const SECRET: &str = "direct-route-secret";

    /// One `POST /v1/orders`: token, Idempotency-Key, Content-Type, body.
    struct Case {
        name: &'static str,
        token: Option<String>,
        key: Option<&'static str>,
        content_type: &'static str,
        body: Vec<u8>,
    }

    impl Case {
        fn request(&self) -> Request {
            let mut request = Request::new(Body::from(self.body.clone()));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = PLACE_ORDER_PATH.parse().unwrap();
            let headers = request.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
            if let Some(token) = &self.token {
                let value = format!("Bearer {token}");
                headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            }
            if let Some(key) = self.key {
                headers.insert("idempotency-key", HeaderValue::from_static(key));
            }
            request
        }
    }

    /// Status, the headers a client reads, and the body.
    async fn answer<S>(mut service: S, request: Request) -> (StatusCode, Vec<String>, Vec<u8>)
    where
        S: tower::Service<Request, Response = Response, Error = Infallible>,
    {
        let response = service.call(request).await.unwrap();
        let status = response.status();
        let headers = [header::CONTENT_TYPE, header::LOCATION, header::RETRY_AFTER]
            .iter()
            .map(|name| format!("{name}: {:?}", response.headers().get(name)))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, body.to_vec())
    }

    /// Every kind of order request, sent through the direct route and then the
    /// router: the same status, headers and body each time. The accepted ones
    /// carry an Idempotency-Key, so the router's answer is the replay of the
    /// same order (a second order would differ in id and time).
    #[tokio::test]
    async fn the_direct_order_route_answers_as_the_router() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("api.db").display());
        let cli = crate::config::Cli::parse_from([
            "flashstock",
            "--database-url",
            &url,
            "--jwt-secret",
            SECRET,
        ]);
        let node = crate::app::Node::start(&cli.settings).await.unwrap();
        let product = node
            .engine
            .create_product(NewProduct {
                name: "direct".into(),
                price: 100,
                stock: 2,
                per_user_limit: Some(1),
                sale_starts_at: None,
                sale_ends_at: None,
                created_at: UnixMillis::now(),
            })
            .await
            .unwrap()
            .0
            .id
            .0;
        let state = AppState::new(Shared {
            engine: node.engine.clone(),
            auth: Auth::new(SECRET),
            settings: cli.settings.clone(),
            metrics: crate::metrics::install(),
            request_metrics: Default::default(),
        });
        let api = Api::new(state.clone());
        let router = router(state.clone());

        let token = |sub: &str| Some(state.auth.token(sub, false, Duration::from_secs(600)));
        let order = |product: u64, quantity: u64| {
            format!(r#"{{"product_id": {product}, "quantity": {quantity}}}"#).into_bytes()
        };
        let json = "application/json";
        let mut huge = br#"{"product_id": 1, "quantity": 1, "pad": ""#.to_vec();
        huge.extend(std::iter::repeat_n(b'a', BODY_BYTES_MAX + 1));
        huge.extend(br#""}"#);
        let case = |name, token, key, content_type, body| Case {
            name,
            token,
            key,
            content_type,
            body,
        };
        let cases = [
            case(
                "placed",
                token("alice"),
                Some("a-1"),
                json,
                order(product, 1),
            ),
            case(
                "key reused",
                token("alice"),
                Some("a-1"),
                json,
                order(product, 2),
            ),
            case(
                "limit",
                token("alice"),
                Some("a-2"),
                json,
                order(product, 1),
            ),
            case(
                "placed too",
                token("bob"),
                Some("b-1"),
                json,
                order(product, 1),
            ),
            case(
                "out of stock",
                token("carol"),
                None,
                json,
                order(product, 1),
            ),
            case("no product", token("carol"), None, json, order(999, 1)),
            case("quantity 0", token("carol"), None, json, order(product, 0)),
            case("too many", token("carol"), None, json, order(product, 11)),
            case("no token", None, None, json, order(product, 1)),
            case(
                "bad token",
                Some("nope".into()),
                None,
                json,
                order(product, 1),
            ),
            case(
                "bad key",
                token("carol"),
                Some("a key"),
                json,
                order(product, 1),
            ),
            case(
                "text",
                token("carol"),
                None,
                "text/plain",
                order(product, 1),
            ),
            case("huge", token("carol"), None, json, huge),
            case(
                "malformed",
                token("carol"),
                None,
                json,
                b"{\"product_id\": 1,".to_vec(),
            ),
            case("array", token("carol"), None, json, b"[1, 2]".to_vec()),
            case(
                "unknown field",
                token("carol"),
                None,
                json,
                br#"{"product_id": 1, "quantity": 1, "x": 1}"#.to_vec(),
            ),
            case("empty", token("carol"), None, json, Vec::new()),
        ];
        let mut statuses = Vec::new();
        for case in &cases {
            let direct = answer(api.clone(), case.request()).await;
            let routed = answer(router.clone(), case.request()).await;
            assert_eq!(
                (direct.0, &direct.1, String::from_utf8_lossy(&direct.2)),
                (routed.0, &routed.1, String::from_utf8_lossy(&routed.2)),
                "{}",
                case.name
            );
            statuses.push((case.name, direct.0.as_u16()));
        }
        // The cases reach every answer the route gives, not one refusal many times.
        let expected = [
            ("placed", 201),
            ("key reused", 422),
            ("limit", 409),
            ("placed too", 201),
            ("out of stock", 409),
            ("no product", 404),
            ("quantity 0", 422),
            ("too many", 422),
            ("no token", 401),
            ("bad token", 401),
            ("bad key", 400),
            ("text", 415),
            ("huge", 413),
            ("malformed", 400),
            ("array", 422),
            ("unknown field", 422),
            ("empty", 400),
        ];
        assert_eq!(statuses, expected);
        // Other requests still reach the router.
        let mut read = Request::new(Body::empty());
        *read.uri_mut() = format!("/v1/products/{product}").parse().unwrap();
        let (status, _, body) = answer(api.clone(), read).await;
        assert_eq!(status, StatusCode::OK);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (&body["stock_reserved"], &body["stock_available"]),
            (&serde_json::json!(2), &serde_json::json!(0)),
            "{body}"
        );
        node.shutdown().await;
    }
}
