//! The whole order lifecycle through HTTP, on SQLite and MariaDB: every
//! transition and refusal of API.md, with the invariant
//! `available + reserved + sold + written_off = total_stock` (and the counts
//! against the sums over orders) checked in the database after each.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Probe, Server, TestDb, admin_token, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Automatic transitions in these tests fall due in a fraction of a second.
const FAST_TIMERS: &[&str] = &[
    "--reservation-ttl",
    "400ms",
    "--shipping-delay",
    "200ms",
    "--delivery-delay",
    "200ms",
];

/// As `FAST_TIMERS`, but an order stays SHIPPED for 2 s: long enough for a
/// poll to see it on a loaded machine (200 ms was missed under CI).
const SHIPPING_TIMERS: &[&str] = &[
    "--reservation-ttl",
    "400ms",
    "--shipping-delay",
    "200ms",
    "--delivery-delay",
    "2s",
];

async fn act(
    server: &Server,
    who: &str,
    order: &Value,
    action: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let path = format!("/v1/orders/{}/{action}", order["id"].as_str().unwrap());
    server
        .request(Method::POST, &path, Some(who), body, None)
        .await
}

async fn get_order(server: &Server, who: &str, order: &Value) -> (StatusCode, Value) {
    let path = format!("/v1/orders/{}", order["id"].as_str().unwrap());
    server
        .request(Method::GET, &path, Some(who), None, None)
        .await
}

fn assert_refused(reply: (StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(
        (reply.0, reply.1["code"].as_str()),
        (status, Some(code)),
        "{}",
        reply.1
    );
}

fn assert_status(reply: &(StatusCode, Value), status: &str) {
    assert_eq!(reply.0, StatusCode::OK, "{}", reply.1);
    assert_eq!(reply.1["status"], status, "{}", reply.1);
}

/// Polls until the stored order has `status` (automatic transitions).
async fn wait_for_status(server: &Server, who: &str, order: &Value, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = get_order(server, who, order).await;
        if code == StatusCode::OK && body["status"] == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "order never became {status}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn counts(probe: &Probe, product: u64) -> (i64, i64, i64, i64, i64) {
    let c = probe.assert_consistent(product).await;
    (c.total, c.available, c.reserved, c.sold, c.written_off)
}

async fn payment_and_cancellation(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let probe = db.probe().await;
    let product = server.create_product(10, Some(2)).await;
    let ann = token("ann", false);

    // Reserve, pay: reserved -> sold.
    let (_, order) = server.order(&ann, product, 2, None).await;
    assert_eq!(order["status"], "PENDING_PAYMENT");
    assert_eq!(order["amount"], 2 * 129_000);
    assert_eq!(counts(&probe, product).await, (10, 8, 2, 0, 0));
    let paid = act(
        &server,
        &ann,
        &order,
        "pay",
        Some(json!({"outcome": "success"})),
    )
    .await;
    assert_status(&paid, "PAID");
    assert_eq!(counts(&probe, product).await, (10, 8, 0, 2, 0));
    assert_refused(
        act(&server, &ann, &order, "pay", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    assert_refused(
        act(&server, &ann, &order, "return", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    // The limit counts paid orders.
    assert_refused(
        server.order(&ann, product, 1, None).await,
        StatusCode::CONFLICT,
        "purchase_limit_exceeded",
    );

    // Cancel after payment: sold -> available, and the limit is free again.
    assert_status(
        &act(&server, &ann, &order, "cancel", None).await,
        "CANCELLED",
    );
    assert_eq!(counts(&probe, product).await, (10, 10, 0, 0, 0));
    assert_refused(
        act(&server, &ann, &order, "cancel", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );

    // A failed payment releases the reservation and frees the limit.
    let (_, order) = server.order(&ann, product, 2, None).await;
    let failed = act(
        &server,
        &ann,
        &order,
        "pay",
        Some(json!({"outcome": "failure"})),
    )
    .await;
    assert_status(&failed, "PAYMENT_FAILED");
    assert_eq!(counts(&probe, product).await, (10, 10, 0, 0, 0));
    let (status, order) = server.order(&ann, product, 2, None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");

    // Cancel an unpaid reservation; an administrator may cancel anyone's order.
    assert_status(
        &act(&server, &admin_token(), &order, "cancel", None).await,
        "CANCELLED",
    );
    assert_eq!(counts(&probe, product).await, (10, 10, 0, 0, 0));
    let (_, order) = server.order(&ann, product, 1, None).await;
    assert_status(
        &act(&server, &ann, &order, "cancel", None).await,
        "CANCELLED",
    );
    assert_refused(
        act(&server, &ann, &order, "pay", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );

    // Bad bodies change nothing.
    let (_, order) = server.order(&ann, product, 1, None).await;
    assert_refused(
        act(
            &server,
            &ann,
            &order,
            "pay",
            Some(json!({"outcome": "maybe"})),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert_eq!(counts(&probe, product).await, (10, 9, 1, 0, 0));
    assert_refused(
        server
            .request(
                Method::POST,
                "/v1/orders/01ARZ3NDEKTSV4RRFFQ69G5FAV/pay",
                Some(&ann),
                None,
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "order_not_found",
    );
    assert_refused(
        server
            .request(
                Method::POST,
                "/v1/orders/not-an-id/cancel",
                Some(&ann),
                None,
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "order_not_found",
    );
}

async fn gateway_decides_without_outcome(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &["--payment-success-rate", "0"]);
    let product = server.create_product(3, None).await;
    let bo = token("bo", false);
    let (_, order) = server.order(&bo, product, 1, None).await;
    assert_status(
        &act(&server, &bo, &order, "pay", None).await,
        "PAYMENT_FAILED",
    );
    let (_, order) = server.order(&bo, product, 1, None).await;
    // An explicit outcome overrides the gateway.
    assert_status(
        &act(
            &server,
            &bo,
            &order,
            "pay",
            Some(json!({"outcome": "success"})),
        )
        .await,
        "PAID",
    );
    db.probe().await.assert_consistent(product).await;
}

async fn reservations_expire_on_their_own(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, FAST_TIMERS);
    let probe = db.probe().await;
    let product = server.create_product(5, Some(3)).await;
    let cy = token("cy", false);
    let (_, order) = server.order(&cy, product, 3, None).await;
    // Nobody asks about the order or the product: the stock still comes back.
    let deadline = Instant::now() + Duration::from_secs(15);
    while probe.product_counts(product).await.available != 5 {
        assert!(Instant::now() < deadline, "the reservation never expired");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(counts(&probe, product).await, (5, 5, 0, 0, 0));
    wait_for_status(&server, &cy, &order, "EXPIRED").await;
    assert_refused(
        act(&server, &cy, &order, "pay", None).await,
        StatusCode::CONFLICT,
        "order_expired",
    );
    assert_refused(
        act(&server, &cy, &order, "cancel", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    // The limit is free again.
    let (status, _) = server.order(&cy, product, 3, None).await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn expiry_survives_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut server = Server::start(&db, &["--reservation-ttl", "1s"]);
    let product = server.create_product(4, None).await;
    let di = token("di", false);
    let (_, order) = server.order(&di, product, 4, None).await;
    server.kill();
    // The reservation falls due while no server runs.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let server = Server::start(&db, &["--reservation-ttl", "1s"]);
    let probe = db.probe().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while probe.product_counts(product).await.available != 4 {
        assert!(
            Instant::now() < deadline,
            "the reservation did not expire after restart"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    wait_for_status(&server, &di, &order, "EXPIRED").await;
    assert_eq!(counts(&probe, product).await, (4, 4, 0, 0, 0));
}

async fn shipping_delivery_and_returns(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, SHIPPING_TIMERS);
    let probe = db.probe().await;
    let product = server.create_product(10, None).await;
    let ed = token("ed", false);
    let admin = admin_token();

    // Return with restock: sold -> available.
    let (_, order) = server.order(&ed, product, 2, None).await;
    assert_status(&act(&server, &ed, &order, "pay", None).await, "PAID");
    assert_refused(
        act(&server, &ed, &order, "return", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    wait_for_status(&server, &ed, &order, "SHIPPED").await;
    assert_refused(
        act(&server, &ed, &order, "cancel", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    wait_for_status(&server, &ed, &order, "DELIVERED").await;
    assert_eq!(counts(&probe, product).await, (10, 8, 0, 2, 0));
    assert_refused(
        act(&server, &admin, &order, "return/complete", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    assert_status(
        &act(&server, &ed, &order, "return", None).await,
        "RETURN_REQUESTED",
    );
    assert_refused(
        act(&server, &ed, &order, "return/complete", None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(counts(&probe, product).await, (10, 8, 0, 2, 0));
    assert_status(
        &act(&server, &admin, &order, "return/complete", None).await,
        "RETURNED",
    );
    assert_eq!(counts(&probe, product).await, (10, 10, 0, 0, 0));
    assert_refused(
        act(&server, &ed, &order, "return", None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );

    // Return without restock: sold -> written_off.
    let (_, order) = server.order(&ed, product, 3, None).await;
    act(&server, &ed, &order, "pay", None).await;
    wait_for_status(&server, &ed, &order, "DELIVERED").await;
    assert_status(
        &act(&server, &ed, &order, "return", None).await,
        "RETURN_REQUESTED",
    );
    let done = act(
        &server,
        &admin,
        &order,
        "return/complete",
        Some(json!({"restock": false})),
    )
    .await;
    assert_status(&done, "RETURNED");
    assert_eq!(counts(&probe, product).await, (10, 7, 0, 0, 3));
    let live = server.product(product).await;
    assert_eq!(
        (
            live["written_off"].as_u64(),
            live["stock_available"].as_u64()
        ),
        (Some(3), Some(7))
    );
}

async fn product_changes_stock_and_views(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let probe = db.probe().await;
    let product = server.create_product(5, None).await;
    let admin = admin_token();
    let fay = token("fay", false);
    let patch = |body: Value, who: String| {
        let server = &server;
        async move {
            server
                .request(
                    Method::PATCH,
                    &format!("/v1/products/{product}"),
                    Some(&who),
                    Some(body),
                    None,
                )
                .await
        }
    };
    let stock = |delta: Value, who: String| {
        let server = &server;
        async move {
            server
                .request(
                    Method::POST,
                    &format!("/v1/products/{product}/stock"),
                    Some(&who),
                    Some(json!({"delta": delta})),
                    None,
                )
                .await
        }
    };

    // Price and limit changes apply to new orders.
    let (status, body) = patch(
        json!({"price": 99_000, "per_user_limit": 1, "name": "re-drop"}),
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["price"].as_u64(), body["per_user_limit"].as_u64()),
        (Some(99_000), Some(1))
    );
    let (_, order) = server.order(&fay, product, 1, None).await;
    assert_eq!(order["unit_price"], 99_000);
    assert_refused(
        server.order(&fay, product, 1, None).await,
        StatusCode::CONFLICT,
        "purchase_limit_exceeded",
    );
    let (status, body) = patch(json!({"per_user_limit": null}), admin.clone()).await;
    assert_eq!(
        (status, &body["per_user_limit"]),
        (StatusCode::OK, &Value::Null)
    );
    assert_eq!(
        server.order(&fay, product, 1, None).await.0,
        StatusCode::CREATED
    );

    // Sale windows.
    let (status, _) = patch(
        json!({"sale_starts_at": "2999-01-01T00:00:00Z"}),
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_refused(
        server.order(&fay, product, 1, None).await,
        StatusCode::CONFLICT,
        "sale_not_active",
    );
    assert_refused(
        patch(
            json!({"sale_ends_at": "2998-01-01T00:00:00Z"}),
            admin.clone(),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_sale_window",
    );
    let (status, _) = patch(
        json!({"sale_starts_at": null, "sale_ends_at": "2000-01-01T00:00:00Z"}),
        admin.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_refused(
        server.order(&fay, product, 1, None).await,
        StatusCode::CONFLICT,
        "sale_not_active",
    );
    assert_eq!(
        patch(json!({"sale_ends_at": null}), admin.clone()).await.0,
        StatusCode::OK
    );
    assert_refused(
        patch(json!({"price": 1}), fay.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_refused(
        patch(json!({"colour": "red"}), admin.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert_refused(
        patch(json!({"name": ""}), admin.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert_refused(
        server
            .request(
                Method::PATCH,
                "/v1/products/999999",
                Some(&admin),
                Some(json!({"price": 1})),
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "product_not_found",
    );

    // Stock corrections.
    assert_eq!(counts(&probe, product).await, (5, 3, 2, 0, 0));
    let (status, body) = stock(json!(10), admin.clone()).await;
    assert_eq!(
        (status, body["total_stock"].as_u64()),
        (StatusCode::OK, Some(15))
    );
    assert_eq!(counts(&probe, product).await, (15, 13, 2, 0, 0));
    assert_refused(
        stock(json!(-14), admin.clone()).await,
        StatusCode::CONFLICT,
        "insufficient_stock",
    );
    let (status, body) = stock(json!(-13), admin.clone()).await;
    assert_eq!(
        (status, body["stock_available"].as_u64()),
        (StatusCode::OK, Some(0))
    );
    assert_eq!(counts(&probe, product).await, (2, 0, 2, 0, 0));
    assert_refused(
        server.order(&token("gus", false), product, 1, None).await,
        StatusCode::CONFLICT,
        "out_of_stock",
    );
    assert_refused(
        stock(json!(0), admin.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert_refused(
        stock(json!(1.5), admin.clone()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_body",
    );
    assert_refused(
        stock(json!(1), fay.clone()).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );

    // Views: counted by the actor, written behind.
    let before = server.product(product).await["views"].as_u64().unwrap();
    for _ in 0..20 {
        server.product(product).await;
    }
    let live = server.product(product).await["views"].as_u64().unwrap();
    assert_eq!(live, before + 21);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored: i64 = match &probe {
            Probe::Sqlite(pool) => sqlx::query_scalar("SELECT views FROM products WHERE id = ?")
                .bind(product as i64)
                .fetch_one(pool)
                .await
                .unwrap(),
            Probe::MySql(pool) => sqlx::query_scalar("SELECT views FROM products WHERE id = ?")
                .bind(product as i64)
                .fetch_one(pool)
                .await
                .unwrap(),
        };
        if stored as u64 == live {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "views never reached the database ({stored} of {live})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn users_reach_only_their_own(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(
        &db,
        &["--shipping-delay", "200ms", "--delivery-delay", "200ms"],
    );
    let product = server.create_product(10, None).await;
    let (owner, other) = (token("owner", false), token("intruder", false));
    let (_, pending) = server.order(&owner, product, 1, None).await;
    let (_, paid) = server.order(&owner, product, 1, None).await;
    act(&server, &owner, &paid, "pay", None).await;
    wait_for_status(&server, &owner, &paid, "DELIVERED").await;

    for order in [&pending, &paid] {
        assert_refused(
            get_order(&server, &other, order).await,
            StatusCode::NOT_FOUND,
            "order_not_found",
        );
        for action in ["pay", "cancel", "return"] {
            assert_refused(
                act(&server, &other, order, action, None).await,
                StatusCode::NOT_FOUND,
                "order_not_found",
            );
        }
    }
    // Nothing moved: the owner's orders are as they were.
    assert_eq!(
        get_order(&server, &owner, &pending).await.1["status"],
        "PENDING_PAYMENT"
    );
    assert_eq!(
        get_order(&server, &owner, &paid).await.1["status"],
        "DELIVERED"
    );
    // An administrator may read any order, but pays and returns none.
    assert_eq!(
        get_order(&server, &admin_token(), &pending).await.0,
        StatusCode::OK
    );
    assert_refused(
        act(&server, &admin_token(), &pending, "pay", None).await,
        StatusCode::NOT_FOUND,
        "order_not_found",
    );
    let (_, list) = server
        .request(Method::GET, "/v1/orders", Some(&other), None, None)
        .await;
    assert_eq!(list["items"], json!([]));

    // No user token reaches an admin endpoint.
    let admin_calls: Vec<(Method, String, Value)> = vec![
        (
            Method::POST,
            "/v1/products".into(),
            json!({"name": "x", "price": 1, "stock": 1}),
        ),
        (
            Method::PATCH,
            format!("/v1/products/{product}"),
            json!({"price": 1}),
        ),
        (
            Method::POST,
            format!("/v1/products/{product}/stock"),
            json!({"delta": 1}),
        ),
        (
            Method::POST,
            "/v1/campaigns".into(),
            json!({"name": "c", "quantity": 1, "discount": {"kind": "fixed", "value": 100}}),
        ),
        (
            Method::POST,
            format!(
                "/v1/orders/{}/return/complete",
                paid["id"].as_str().unwrap()
            ),
            json!({}),
        ),
    ];
    for (method, path, body) in admin_calls {
        let reply = server
            .request(method, &path, Some(&owner), Some(body), None)
            .await;
        assert_refused(reply, StatusCode::FORBIDDEN, "forbidden");
    }
    db.probe().await.assert_consistent(product).await;
}

async fn lists_page_with_cursors(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let products: Vec<u64> =
        futures::future::join_all((0..5).map(|_| server.create_product(100, None))).await;
    let mut seen = Vec::new();
    let mut path = "/v1/products?limit=2".to_string();
    loop {
        let (status, page) = server.request(Method::GET, &path, None, None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_u64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/products?limit=2&after={next}"),
            None => break,
        }
    }
    let mut sorted = products.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    let hal = token("hal", false);
    let mut placed = Vec::new();
    for product in &products {
        let (_, order) = server.order(&hal, *product, 1, None).await;
        placed.push(order["id"].as_str().unwrap().to_string());
    }
    server
        .order(&token("ivy", false), products[0], 1, None)
        .await;
    let (_, first) = server
        .request(Method::GET, "/v1/orders?limit=3", Some(&hal), None, None)
        .await;
    let next = first["next"].as_str().expect("a second page");
    let (_, second) = server
        .request(
            Method::GET,
            &format!("/v1/orders?limit=3&after={next}"),
            Some(&hal),
            None,
            None,
        )
        .await;
    assert_eq!(second["next"], Value::Null);
    let listed: Vec<String> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect();
    placed.reverse();
    assert_eq!(listed, placed, "own orders, newest first");
    assert_refused(
        server
            .request(
                Method::GET,
                "/v1/orders?after=bogus",
                Some(&hal),
                None,
                None,
            )
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );

    let campaign = server.create_campaign(10, 3).await;
    for _ in 0..3 {
        let path = format!("/v1/campaigns/{campaign}/coupons");
        assert_eq!(
            server
                .request(Method::POST, &path, Some(&hal), None, None)
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let (_, coupons) = server
        .request(Method::GET, "/v1/coupons?limit=2", Some(&hal), None, None)
        .await;
    assert_eq!(coupons["items"].as_array().unwrap().len(), 2);
    let next = coupons["next"].as_str().unwrap();
    let (_, rest) = server
        .request(
            Method::GET,
            &format!("/v1/coupons?limit=2&after={next}"),
            Some(&hal),
            None,
            None,
        )
        .await;
    assert_eq!(
        (rest["items"].as_array().unwrap().len(), &rest["next"]),
        (1, &Value::Null)
    );
}

async fn campaign_refusals(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let admin = admin_token();
    let (status, later) = server
        .request(
            Method::POST,
            "/v1/campaigns",
            Some(&admin),
            Some(json!({
            "name": "tomorrow", "quantity": 5, "discount": {"kind": "fixed", "value": 5000},
            "starts_at": "2999-01-01T00:00:00Z"})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{later}");
    let path = format!("/v1/campaigns/{}/coupons", later["id"]);
    assert_refused(
        server
            .request(Method::POST, &path, Some(&token("jo", false)), None, None)
            .await,
        StatusCode::CONFLICT,
        "campaign_not_active",
    );
    assert_refused(
        server
            .request(
                Method::POST,
                "/v1/campaigns/424242/coupons",
                Some(&token("jo", false)),
                None,
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "campaign_not_found",
    );
    assert_refused(
        server
            .request(Method::GET, "/v1/campaigns/424242", None, None, None)
            .await,
        StatusCode::NOT_FOUND,
        "campaign_not_found",
    );
    for discount in [
        json!({"kind": "percent", "value": 0}),
        json!({"kind": "percent", "value": 101}),
        json!({"kind": "bogo", "value": 1}),
    ] {
        let reply = server
            .request(
                Method::POST,
                "/v1/campaigns",
                Some(&admin),
                Some(json!({"name": "bad", "quantity": 1, "discount": discount})),
                None,
            )
            .await;
        assert_refused(reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
}

/// User ids and keys are stored byte for byte, whatever characters they hold.
async fn any_user_id_round_trips(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let product = server.create_product(5, None).await;
    let sub = "o'brien\\\"; DROP TABLE orders; -- é 🚀";
    let who = token(sub, false);
    let (status, order) = server.order(&who, product, 1, Some("k'\\\"`;--")).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["user_id"], sub);
    let (_, list) = server
        .request(Method::GET, "/v1/orders", Some(&who), None, None)
        .await;
    assert_eq!(list["items"][0]["user_id"], sub);
    assert_eq!(list["items"][0]["id"], order["id"]);
    // Another user differing only in case is another user.
    let (_, other) = server
        .request(
            Method::GET,
            "/v1/orders",
            Some(&token(&sub.to_uppercase(), false)),
            None,
            None,
        )
        .await;
    assert_eq!(other["items"], json!([]));
    // The key replays after a restart, so it was stored as sent.
    let mut server = server;
    server.kill();
    let server = Server::start(&db, &[]);
    let (status, replay) = server.order(&who, product, 1, Some("k'\\\"`;--")).await;
    assert_eq!((status, &replay["id"]), (StatusCode::CREATED, &order["id"]));
    db.probe().await.assert_consistent(product).await;
}

on_both_backends! {
    exotic_user_ids => any_user_id_round_trips,
    pay_and_cancel => payment_and_cancellation,
    gateway => gateway_decides_without_outcome,
    expiry => reservations_expire_on_their_own,
    expiry_after_restart => expiry_survives_a_restart,
    ship_deliver_return => shipping_delivery_and_returns,
    product_admin => product_changes_stock_and_views,
    authorisation => users_reach_only_their_own,
    pagination => lists_page_with_cursors,
    campaigns => campaign_refusals,
}
