//! The races of a flash sale, through HTTP, on SQLite and on MariaDB: thousands
//! of buyers at once for a few units, a per-user limit under concurrent orders,
//! a first-come coupon campaign, and concurrent retries with one key.

mod common;

use common::{Backend, SHARDS, Server, TestDb, tally, token, user_token};
use reqwest::StatusCode;

/// Requests outstanding at once in a storm: enough that thousands of orders
/// race in the product's mailbox, few enough for one test machine's sockets.
const IN_FLIGHT: usize = 1_000;

async fn drop_of(backend: Backend, users: usize, stock: u64) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let product = server.create_product(stock, None).await;
    let requests = (0..users)
        .map(|n| (user_token(n), product, 1, None))
        .collect();
    let replies = server.order_storm(requests, IN_FLIGHT).await;
    let counts = tally(&replies);
    eprintln!("{backend:?}: {users} users, stock {stock}: {counts:?}");
    let accepted = users.min(stock as usize);
    let mut expected = std::collections::BTreeMap::from([("201".to_string(), accepted)]);
    if users > accepted {
        expected.insert("409 out_of_stock".to_string(), users - accepted);
    }
    assert_eq!(counts, expected);

    // Every acknowledged order is stored, once, for its own user.
    let probe = db.probe().await;
    let stored = probe.orders(product).await;
    assert_eq!(stored.len(), accepted);
    let mut acked: Vec<String> = replies
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, body)| body["id"].as_str().unwrap().to_string())
        .collect();
    let mut ids: Vec<String> = stored.iter().map(|o| o.0.clone()).collect();
    acked.sort();
    ids.sort();
    assert_eq!(acked, ids);
    let counts = probe.assert_consistent(product).await;
    assert_eq!(counts.available, stock as i64 - accepted as i64);
    assert_eq!(counts.reserved, accepted as i64);
    let live = server.product(product).await;
    assert_eq!(live["stock_available"], counts.available);
    assert_eq!(live["stock_reserved"], counts.reserved);
}

async fn ten_thousand_users_for_ten_units(backend: Backend) {
    drop_of(backend, 10_000, 10).await;
}

async fn ten_thousand_users_for_ten_thousand_units(backend: Backend) {
    drop_of(backend, 10_000, 10_000).await;
}

async fn per_user_limit_holds_under_concurrent_orders(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let product = server.create_product(1_000, Some(3)).await;
    let alice = token("alice", false);
    let requests = (0..100)
        .map(|_| (alice.clone(), product, 1, None))
        .collect();
    let replies = server.order_storm(requests, 100).await;
    assert_eq!(
        tally(&replies),
        [
            ("201".to_string(), 3),
            ("409 purchase_limit_exceeded".to_string(), 97)
        ]
        .into()
    );
    let probe = db.probe().await;
    let stored = probe.orders(product).await;
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|o| o.1 == "alice"));
    probe.assert_consistent(product).await;
}

async fn coupon_race(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let campaign = server.create_campaign(1_000, 1).await;
    let issue = |token: String| {
        let server = &server;
        async move { server.claim_coupon(&token, campaign, None).await }
    };
    use futures::StreamExt;
    let replies: Vec<_> = futures::stream::iter((0..5_000).map(user_token))
        .map(issue)
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    assert_eq!(
        tally(&replies),
        [
            ("201".to_string(), 1_000),
            ("409 sold_out".to_string(), 4_000)
        ]
        .into()
    );
    let (issued, holders) = db.probe().await.campaign(campaign).await;
    assert_eq!(issued, 1_000);
    assert_eq!(holders.len(), 1_000);
    let mut distinct = holders.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 1_000, "a user got two coupons");

    // One user racing 50 times for a fresh campaign gets exactly one.
    let campaign = server.create_campaign(1_000, 1).await;
    let bob = token("bob", false);
    let issue = |token: String| {
        let server = &server;
        async move { server.claim_coupon(&token, campaign, None).await }
    };
    let replies: Vec<_> = futures::stream::iter(std::iter::repeat_n(bob, 50))
        .map(issue)
        .buffer_unordered(50)
        .collect()
        .await;
    assert_eq!(
        tally(&replies),
        [
            ("201".to_string(), 1),
            ("409 issue_limit_reached".to_string(), 49)
        ]
        .into()
    );
    let (issued, holders) = db.probe().await.campaign(campaign).await;
    assert_eq!((issued, holders), (1, vec!["bob".to_string()]));
}

async fn concurrent_retries_with_one_key_make_one_order(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let product = server.create_product(100, None).await;
    let carol = token("carol", false);
    let requests = (0..50)
        .map(|_| (carol.clone(), product, 2, Some("checkout-7f3a".to_string())))
        .collect();
    let replies = server.order_storm(requests, 50).await;
    assert_eq!(tally(&replies), [("201".to_string(), 50)].into());
    let first = &replies[0].1;
    assert!(replies.iter().all(|(_, body)| body["id"] == first["id"]));
    let probe = db.probe().await;
    assert_eq!(probe.orders(product).await.len(), 1);
    assert_eq!(probe.product_counts(product).await.reserved, 2);

    // The same key with another body is refused and changes nothing.
    let (status, body) = server
        .order(&carol, product, 3, Some("checkout-7f3a"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "idempotency_key_reused");
    // A refusal is remembered too: the key replays it even after stock returns.
    let (status, _) = server.order(&carol, product, 10, Some("too-big")).await;
    assert_eq!(status, StatusCode::CREATED);
    let dave = token("dave", false);
    let (status, body) = server.order(&dave, product, 10, Some("dave-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    probe.assert_consistent(product).await;
    assert_eq!(probe.orders(product).await.len(), 3);
}

/// Several arbiters, each accepting connections: orders reach products whose
/// actors live on another arbiter than the one serving the connection, and
/// every drop still sells exactly its stock; SIGTERM then stops every arbiter's
/// server and flushes.
async fn several_arbiters_share_the_load(backend: Backend) {
    const ARBITERS: usize = 3;
    const PRODUCTS: usize = 6;
    const STOCK: u64 = 40;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut server = Server::start(&db, &["--arbiters", &ARBITERS.to_string()]);
    let mut products = Vec::new();
    for _ in 0..PRODUCTS {
        products.push(server.create_product(STOCK, None).await);
    }
    let arbiters: std::collections::BTreeSet<usize> = products
        .iter()
        .map(|id| {
            let key = flashstock::domain::ItemKey::Product(flashstock::domain::ProductId(*id));
            let shard = flashstock::cluster::shard_of(key, SHARDS);
            flashstock::actors::arbiter_of(shard as usize, ARBITERS)
        })
        .collect();
    assert!(arbiters.len() > 1, "the products all live on one arbiter");

    let users = 100;
    let requests = (0..users * PRODUCTS)
        .map(|n| (user_token(n), products[n % PRODUCTS], 1, None))
        .collect();
    let replies = server.order_storm(requests, 300).await;
    let counts = tally(&replies);
    let sold = PRODUCTS * STOCK as usize;
    let expected = std::collections::BTreeMap::from([
        ("201".to_string(), sold),
        ("409 out_of_stock".to_string(), users * PRODUCTS - sold),
    ]);
    assert_eq!(counts, expected);

    let status = server.terminate();
    assert!(status.success(), "{status:?}");
    let probe = db.probe().await;
    for product in products {
        assert_eq!(probe.orders(product).await.len(), STOCK as usize);
        let counts = probe.assert_consistent(product).await;
        assert_eq!((counts.available, counts.reserved), (0, STOCK as i64));
    }
}

on_both_backends! {
    several_arbiters => several_arbiters_share_the_load,
    drop_10_units_10000_users => ten_thousand_users_for_ten_units,
    drop_10000_units_10000_users => ten_thousand_users_for_ten_thousand_units,
    per_user_limit_concurrent => per_user_limit_holds_under_concurrent_orders,
    coupons_first_come => coupon_race,
    idempotent_retries => concurrent_retries_with_one_key_make_one_order,
}
