//! Running the engine: the CLI's `migrate` and `token`, health and metrics,
//! passivation of idle actors, bounded queues answering 503, and the first line
//! of defence (authentication, problem+json for bad input).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Backend, JWT_SECRET, Server, TestDb, admin_token, token, user_token};
use reqwest::{Method, StatusCode};
use serde_json::json;

async fn migrate_subcommand_prepares_the_database(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_flashstock"))
        .args(["migrate", "--database-url", &db.url, "--shards", "32"])
        .output()
        .expect("run migrate");
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("32 shards"));
    // The shard count is fixed at first migration: a later --shards is ignored.
    let output = Command::new(env!("CARGO_BIN_EXE_flashstock"))
        .args(["migrate", "--database-url", &db.url, "--shards", "64"])
        .output()
        .expect("run migrate again");
    assert!(String::from_utf8_lossy(&output.stdout).contains("32 shards"));
}

async fn idle_actors_passivate_and_reactivate(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &["--passivate-after", "200ms"]);
    let product = server.create_product(10, None).await;
    let (status, order) = server.order(&user_token(1), product, 1, None).await;
    assert_eq!(status, StatusCode::CREATED);
    // Both passivate: the reservation expires in 10 minutes, and the node's
    // timer sweep re-activates the product before then.
    let campaign = server.create_campaign(10, 1).await;
    let path = format!("/v1/campaigns/{campaign}/coupons");
    let (status, _) = server
        .request(Method::POST, &path, Some(&user_token(1)), None, None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(active_actors(&server, "campaign").await, 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while active_actors(&server, "campaign").await + active_actors(&server, "product").await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "actors never passivated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The product reloads with its reservation.
    assert_eq!(server.product(product).await["stock_reserved"], 1);
    // Reactivation reloads the state: the user's coupon is still counted.
    let (status, body) = server
        .request(Method::POST, &path, Some(&user_token(1)), None, None)
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &json!("issue_limit_reached"))
    );
    let (status, _) = server
        .request(Method::POST, &path, Some(&user_token(2)), None, None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(order["id"].is_string());
}

async fn metrics_text(server: &Server) -> String {
    let response = server
        .client
        .get(format!("{}/metrics", server.url))
        .send()
        .await;
    response.unwrap().text().await.unwrap()
}

async fn active_actors(server: &Server, kind: &str) -> u64 {
    let text = metrics_text(server).await;
    let prefix = format!("flashstock_active_actors{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}

async fn health_and_metrics(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let (status, body) = server
        .request(Method::GET, "/healthz", None, None, None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, _) = server
        .request(Method::GET, "/readyz", None, None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let product = server.create_product(1, None).await;
    server.order(&user_token(1), product, 1, None).await;
    server.order(&user_token(2), product, 1, None).await;
    let text = metrics_text(&server).await;
    for expected in [
        "flashstock_http_requests_total{route=\"/v1/orders\",method=\"POST\",status=\"201\"} 1",
        "flashstock_http_requests_total{route=\"/v1/orders\",method=\"POST\",status=\"409\"} 1",
        "flashstock_reservations_total{result=\"placed\"} 1",
        "flashstock_reservations_total{result=\"out_of_stock\"} 1",
        "flashstock_http_request_duration_seconds_bucket",
        "flashstock_writer_batch_rows_bucket",
        "flashstock_writer_flush_duration_seconds_bucket",
        "flashstock_writer_queue_rows",
        "flashstock_active_actors{kind=\"product\"} 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // Both answers came after their batch committed: nothing is queued, and the
    // queue-depth gauge of every shard says so.
    for line in text.lines() {
        if let Some(depth) = line.strip_prefix("flashstock_writer_queue_rows{") {
            assert!(depth.ends_with("} 0"), "a drained queue reads {line:?}");
        }
    }
}

async fn full_queue_answers_503_and_loses_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(
        &db,
        &[
            "--ack",
            "memory",
            "--queue-rows-max",
            "4",
            "--batch-rows-max",
            "4",
        ],
    );
    let product = server.create_product(100_000, None).await;
    let mut unavailable = 0;
    let mut created = 0;
    for round in 0..20 {
        let requests = (0..500)
            .map(|n| (user_token(round * 500 + n), product, 1, None))
            .collect();
        for (status, body) in server.order_storm(requests, 250).await {
            match status {
                StatusCode::CREATED => created += 1,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(body["code"], "unavailable");
                    unavailable += 1;
                }
                other => panic!("unexpected {other}: {body}"),
            }
        }
        if unavailable > 0 {
            break;
        }
    }
    assert!(unavailable > 0, "the queue bound never refused");
    // The refused changed nothing; everything accepted is stored.
    let response = server
        .client
        .post(format!("{}/v1/orders", server.url))
        .bearer_auth(user_token(999_999))
        .json(&json!({"product_id": product, "quantity": 1}))
        .send()
        .await
        .unwrap();
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        assert_eq!(response.headers()["retry-after"], "1");
    } else {
        created += 1;
    }
    let mut server = server;
    assert!(server.terminate().success());
    let probe = db.probe().await;
    assert_eq!(probe.orders(product).await.len(), created);
    probe.assert_consistent(product).await;
}

/// A request body, path and key, and the status and code it must get.
type BadRequest = (
    Option<serde_json::Value>,
    &'static str,
    Option<&'static str>,
    StatusCode,
    &'static str,
);

async fn authentication_and_bad_input(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let product = server.create_product(5, None).await;
    let order = json!({"product_id": product, "quantity": 1});
    let expired = {
        let claims = json!({"sub": "mallory", "exp": 1_000_000});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let forged = {
        let claims = json!({"sub": "mallory", "exp": 4_000_000_000u64, "role": "admin"});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"not the secret"),
        )
        .unwrap()
    };
    let hs512 = {
        let claims = json!({"sub": "mallory", "exp": 4_000_000_000u64});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    for bad in [
        None,
        Some("garbage"),
        Some(expired.as_str()),
        Some(forged.as_str()),
        Some(hs512.as_str()),
    ] {
        let (status, body) = server
            .request(Method::POST, "/v1/orders", bad, Some(order.clone()), None)
            .await;
        assert_eq!(
            (status, &body["code"]),
            (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
        );
    }
    let (status, body) = server
        .request(
            Method::POST,
            "/v1/products",
            Some(&token("u", false)),
            Some(json!({"name": "x", "price": 1, "stock": 1})),
            None,
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );

    let user = user_token(1);
    let cases: Vec<BadRequest> = vec![
        (
            Some(json!({"product_id": product, "quantity": 0})),
            "/v1/orders",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some(json!({"product_id": product, "quantity": 11})),
            "/v1/orders",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some(json!({"product_id": product, "quantity": "1"})),
            "/v1/orders",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some(json!({"product_id": product, "quantity": 1, "coupon": "x"})),
            "/v1/orders",
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            Some(json!({"product_id": 999_999, "quantity": 1})),
            "/v1/orders",
            None,
            StatusCode::NOT_FOUND,
            "product_not_found",
        ),
        (
            Some(order.clone()),
            "/v1/orders",
            Some("has space"),
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
        ),
    ];
    for (body, path, key, want_status, want_code) in cases {
        let (status, reply) = server
            .request(Method::POST, path, Some(&user), body.clone(), key)
            .await;
        assert_eq!(
            (status, &reply["code"]),
            (want_status, &json!(want_code)),
            "{body:?}"
        );
    }
    let raw = |body: Vec<u8>, content_type: &'static str| {
        server
            .client
            .post(format!("{}/v1/orders", server.url))
            .bearer_auth(&user)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // Each refusal is problem+json with its stable code.
    let refused = |response: reqwest::Response| async move {
        let status = response.status();
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        (
            status,
            body["code"].as_str().unwrap_or_default().to_string(),
        )
    };
    let response = raw(b"{\"product_id\": 1,".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(
        refused(response).await,
        (StatusCode::BAD_REQUEST, "malformed_json".into())
    );
    let response = raw(vec![0xff, 0xfe, 0x7b], "application/json")
        .await
        .unwrap();
    assert_eq!(
        refused(response).await,
        (StatusCode::BAD_REQUEST, "malformed_json".into())
    );
    let response = raw(b"[1, 2]".to_vec(), "application/json").await.unwrap();
    assert_eq!(
        refused(response).await,
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body".into())
    );
    let response = raw(b"{}".to_vec(), "text/plain").await.unwrap();
    assert_eq!(
        refused(response).await,
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type".into()
        )
    );
    let mut huge = b"{\"product_id\": 1, \"quantity\": 1, \"pad\": \"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 70_000));
    huge.extend(b"\"}");
    let response = raw(huge, "application/json").await.unwrap();
    assert_eq!(
        refused(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    let (status, body) = server
        .request(Method::GET, "/v1/products/999999", None, None, None)
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!("product_not_found"))
    );
    let admin = admin_token();
    let (status, body) = server
        .request(
            Method::POST,
            "/v1/products/999999/stock",
            Some(&admin),
            Some(json!({"delta": 1})),
            None,
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!("product_not_found"))
    );
    let (status, body) = server
        .request(Method::GET, "/v1/nothing-here", None, None, None)
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
    let (status, body) = server
        .request(Method::DELETE, "/v1/orders", Some(&user), None, None)
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::METHOD_NOT_ALLOWED, &json!("method_not_allowed"))
    );
    let path = "/v1/campaigns/1/coupons";
    let (status, body) = server
        .request(Method::POST, path, Some(&user), None, Some("tab\there"))
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_idempotency_key"))
    );
    let (status, body) = server
        .request(Method::GET, "/v1/products/abc", None, None, None)
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_parameter"))
    );
    let (status, body) = server
        .request(Method::GET, "/v1/products?limit=500", None, None, None)
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_parameter"))
    );
    // Nothing above changed the product.
    let counts = db.probe().await.assert_consistent(product).await;
    assert_eq!(counts.available, 5);
    assert!(admin_token().len() > 10);
}

/// `flashstock loadtest --url URL --jwt-secret SECRET ARGS...`, run to its end.
fn loadtest(url: &str, secret: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flashstock"))
        .args(["loadtest", "--url", url, "--jwt-secret", secret])
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run loadtest")
}

async fn loadtest_checks_a_drop(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let report = db.dir().join("drop.json");
    let output = loadtest(
        &server.url,
        JWT_SECRET,
        &[
            "--connections",
            "64",
            "--json",
            report.to_str().unwrap(),
            "drop",
            "--users",
            "500",
            "--stock",
            "20",
        ],
    );
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(table.contains("verdict       PASS"), "{table}");
    let written = std::fs::read(&report).unwrap();
    let report_json: serde_json::Value = serde_json::from_slice(&written).unwrap();
    assert_eq!(
        report_json["replies"],
        json!({"201": 20, "409 out_of_stock": 480})
    );
    assert_eq!(report_json["verdict"]["passed"], true);
    assert!(report_json["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
    // What the loader's own threads spent, from the system's clock of each.
    let loader = &report_json["loader"];
    assert!(loader["threads"].as_u64().unwrap() >= 1, "{loader}");
    assert!(loader["cpu_s"].as_f64().unwrap() > 0.0, "{loader}");
    assert!(
        loader["cpu_us_per_request"].as_f64().unwrap() > 0.0,
        "{loader}"
    );
    assert!(table.contains("loader        "), "{table}");
    // A wrong secret cannot set the drop up: the verdict is a failure, not a panic.
    let output = loadtest(
        &server.url,
        "wrong",
        &["drop", "--users", "10", "--stock", "1"],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("401"));
    // A report that cannot be written: refused before any load, naming the file.
    let unwritable = db.dir().join("no such directory").join("drop.json");
    let output = loadtest(
        &server.url,
        JWT_SECRET,
        &[
            "--json",
            unwritable.to_str().unwrap(),
            "drop",
            "--users",
            "10",
            "--stock",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot create {}", unwritable.display())),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "no load without a report file");
    // No server at the URL: one clear error before any load, for every scenario.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let json = ["--json", report.to_str().unwrap()];
    for scenario in [
        &["get", "--path", "/healthz", "--duration", "2s"][..],
        &["drop", "--users", "10", "--stock", "1"],
    ] {
        let output = loadtest(&nobody, JWT_SECRET, &[&json[..], scenario].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{scenario:?}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot connect to {nobody}")),
            "{scenario:?}: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{scenario:?}: no report without a server"
        );
        // The failed run leaves the earlier report as it was, and nothing beside it.
        assert_eq!(std::fs::read(&report).unwrap(), written, "{scenario:?}");
    }
    let left: Vec<_> = std::fs::read_dir(db.dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with(".flashstock-report"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A pool of one connection: commits do not keep it from reads (nor from the
/// readiness check) between orders.
async fn one_connection_serves_orders_and_reads(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &["--db-connections-max", "1", "--query-timeout", "5s"]);
    let product = server.create_product(10, None).await;
    for user in 1..=3 {
        let (status, order) = server.order(&user_token(user), product, 1, None).await;
        assert_eq!(status, StatusCode::CREATED, "{order}");
        let path = format!("/v1/orders/{}", order["id"].as_str().expect("order id"));
        let (status, read) = server
            .request(Method::GET, &path, Some(&user_token(user)), None, None)
            .await;
        assert_eq!(
            (status, &read["id"]),
            (StatusCode::OK, &order["id"]),
            "{read}"
        );
    }
    let (status, body) = server
        .request(Method::GET, "/readyz", None, None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

on_both_backends! {
    loadtest_drop => loadtest_checks_a_drop,
    migrate_cli => migrate_subcommand_prepares_the_database,
    passivation => idle_actors_passivate_and_reactivate,
    health_metrics => health_and_metrics,
    backpressure => full_queue_answers_503_and_loses_nothing,
    auth_and_input => authentication_and_bad_input,
    one_connection => one_connection_serves_orders_and_reads,
}
