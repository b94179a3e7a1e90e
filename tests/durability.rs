//! Nothing acknowledged is lost: a server killed with SIGKILL under load restarts
//! with every acknowledged order stored; a restart continues where it stopped
//! (stock, per-user counts, idempotency keys, campaign counts); SIGTERM flushes
//! every writer, even with `ack = memory`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Server, TestDb, token, user_token};
use reqwest::StatusCode;
use serde_json::json;

/// Order requests at most in the load before the kill (bounded, as every load
/// here); the kill comes after `ACKS_BEFORE_KILL` acknowledgements.
const LOAD_REQUESTS_MAX: usize = 20_000;
const ACKS_BEFORE_KILL: usize = 500;
const LOAD_CONNECTIONS: usize = 64;

async fn sigkill_under_load_loses_no_acknowledged_order(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut server = Server::start(&db, &[]);
    let product = server.create_product(1_000_000, None).await;

    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let acks = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..LOAD_CONNECTIONS)
        .map(|_| {
            let (client, url) = (server.client.clone(), server.url.clone());
            let (acked, acks, next, stop) =
                (acked.clone(), acks.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= LOAD_REQUESTS_MAX {
                        break;
                    }
                    let reply = client
                        .post(format!("{url}/v1/orders"))
                        .bearer_auth(user_token(n))
                        .json(&serde_json::json!({"product_id": product, "quantity": 1}))
                        .send()
                        .await;
                    // After the kill, requests fail: that is the point.
                    let Ok(response) = reply else { break };
                    if response.status() == StatusCode::CREATED {
                        let Ok(body) = response.json::<serde_json::Value>().await else {
                            break;
                        };
                        acked
                            .lock()
                            .unwrap()
                            .push(body["id"].as_str().unwrap().to_string());
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    while acks.load(Ordering::Relaxed) < ACKS_BEFORE_KILL {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= ACKS_BEFORE_KILL);

    let server = Server::start(&db, &[]);
    let probe = db.probe().await;
    let stored: std::collections::HashSet<String> = probe
        .orders(product)
        .await
        .into_iter()
        .map(|o| o.0)
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged orders lost: {lost:?}",
        lost.len()
    );
    let counts = probe.assert_consistent(product).await;
    assert_eq!(counts.reserved as usize, stored.len());
    // The restarted server continues from the stored state.
    let (status, body) = server.order(&token("after", false), product, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        server.product(product).await["stock_reserved"],
        stored.len() as u64 + 1
    );
}

async fn restart_continues_where_it_stopped(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut server = Server::start(&db, &[]);
    let product = server.create_product(10, Some(2)).await;
    let campaign = server.create_campaign(3, 1).await;
    let erin = token("erin", false);
    let (status, first) = server.order(&erin, product, 2, Some("erin-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, refused) = server.order(&erin, product, 1, Some("erin-2")).await;
    assert_eq!(
        (status, &refused["code"]),
        (StatusCode::CONFLICT, &"purchase_limit_exceeded".into())
    );
    let (status, erin_coupon) = server
        .claim_coupon(&erin.clone(), campaign, Some("erin-coupon"))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        server.claim_coupon(&user_token(1), campaign, None).await.0,
        StatusCode::CREATED
    );
    let before = server.product(product).await;
    // SIGKILL: the restart must not depend on a clean shutdown.
    server.kill();

    let server = Server::start(&db, &[]);
    let after = server.product(product).await;
    assert_eq!(before, after, "stock after restart");
    // Per-user counts: erin still holds 2 of her 2.
    let (status, body) = server.order(&erin, product, 1, None).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &"purchase_limit_exceeded".into())
    );
    // Keys replay their first answers, order and refusal alike.
    let (status, replay) = server.order(&erin, product, 2, Some("erin-1")).await;
    assert_eq!((status, &replay["id"]), (StatusCode::CREATED, &first["id"]));
    let (status, replay) = server.order(&erin, product, 1, Some("erin-2")).await;
    assert_eq!(
        (status, &replay["code"]),
        (StatusCode::CONFLICT, &refused["code"])
    );
    // Campaign: 2 of 3 issued; erin's key replays her coupon; one left.
    let (status, replay) = server
        .claim_coupon(&erin.clone(), campaign, Some("erin-coupon"))
        .await;
    assert_eq!(
        (status, &replay["id"]),
        (StatusCode::CREATED, &erin_coupon["id"])
    );
    let (status, body) = server.claim_coupon(&erin, campaign, None).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &"issue_limit_reached".into())
    );
    assert_eq!(
        server.claim_coupon(&user_token(2), campaign, None).await.0,
        StatusCode::CREATED
    );
    let (status, body) = server.claim_coupon(&user_token(3), campaign, None).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::CONFLICT, &"sold_out".into())
    );
    let (status, campaign_body) = server
        .request(
            reqwest::Method::GET,
            &format!("/v1/campaigns/{campaign}"),
            None,
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            campaign_body["issued"].as_u64(),
            campaign_body["remaining"].as_u64()
        ),
        (Some(3), Some(0))
    );
    db.probe().await.assert_consistent(product).await;
}

async fn sigterm_flushes_memory_acks(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let mut server = Server::start(&db, &["--ack", "memory"]);
    let product = server.create_product(5_000, None).await;
    let requests = (0..2_000)
        .map(|n| (user_token(n), product, 1, None))
        .collect();
    let replies = server.order_storm(requests, 200).await;
    assert!(replies.iter().all(|(s, _)| *s == StatusCode::CREATED));
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
    let probe = db.probe().await;
    assert_eq!(probe.orders(product).await.len(), 2_000);
    assert_eq!(probe.assert_consistent(product).await.available, 3_000);
}

async fn a_fenced_writer_writes_nothing_and_reloads(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let server = Server::start(&db, &[]);
    let product = server.create_product(10, Some(1)).await;
    let (status, _) = server.order(&user_token(1), product, 1, None).await;
    assert_eq!(status, StatusCode::CREATED);
    let probe = db.probe().await;
    // Another owner takes the shards: our next batch must not commit.
    probe.bump_epochs().await;
    let (status, body) = server.order(&user_token(2), product, 1, Some("k2")).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("unavailable"))
    );
    assert_eq!(
        probe.orders(product).await.len(),
        1,
        "a fenced batch was written"
    );
    // The writer takes a new epoch and the actor reloads from the database: the
    // refused order left no trace in memory either.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let reply = server.order(&user_token(2), product, 1, Some("k2")).await;
        if reply.0 != StatusCode::SERVICE_UNAVAILABLE || std::time::Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let live = server.product(product).await;
    assert_eq!(
        (
            live["stock_reserved"].as_u64(),
            live["stock_available"].as_u64()
        ),
        (Some(2), Some(8))
    );
    let counts = probe.assert_consistent(product).await;
    assert_eq!(counts.reserved, 2);
}

on_both_backends! {
    fenced_writer => a_fenced_writer_writes_nothing_and_reloads,
    sigkill_under_load => sigkill_under_load_loses_no_acknowledged_order,
    restart_continues => restart_continues_where_it_stopped,
    sigterm_flushes => sigterm_flushes_memory_acks,
}
