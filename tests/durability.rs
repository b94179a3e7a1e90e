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

/// A product of `stock` units at 100, on sale from now on.
fn new_product(name: String, stock: u64) -> flashstock::persistence::NewProduct {
    flashstock::persistence::NewProduct {
        name,
        price: 100,
        stock,
        per_user_limit: None,
        sale_starts_at: None,
        sale_ends_at: None,
        created_at: flashstock::domain::UnixMillis::now(),
    }
}

/// One unit of `product` reserved by `user` at `now`, awaiting payment.
fn pending_order(
    product: flashstock::domain::ProductId,
    user: &str,
    now: flashstock::domain::UnixMillis,
) -> flashstock::domain::Order {
    use flashstock::domain::{Order, OrderId, OrderStatus, UserId};
    Order {
        id: OrderId::generate(),
        user_id: UserId::parse(user).unwrap(),
        product_id: product,
        quantity: 1,
        unit_price: 100,
        status: OrderStatus::PendingPayment,
        created_at: now,
        updated_at: now,
        expires_at: now,
    }
}

/// One transaction carrying the batches of several shards (as the committer
/// groups them): every product's counts, every order and every status change
/// land, each shard's batch count moves by one; and when one shard's epoch is
/// not ours, the whole transaction writes nothing, for any shard.
async fn one_transaction_for_many_shards(backend: Backend) {
    use flashstock::cluster::shard_of;
    use flashstock::domain::{ItemKey, OrderStatus, ProductId, ProductStock, UnixMillis};
    use flashstock::persistence::{CommitError, Mutation, ShardBatch};

    const SHARDS: u32 = 8;
    const PRODUCTS: usize = 12;
    // More orders per product than one CASE statement takes (64).
    const ORDERS: u64 = 70;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let store = flashstock::persistence::connect(&db.url, 4, Default::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.shard_count(SHARDS).await.unwrap(), SHARDS);
    let all: Vec<u32> = (0..SHARDS).collect();
    let epochs = store.acquire_shards(&all, "node-a").await.unwrap();
    let now = UnixMillis::now();
    let mut products = Vec::new();
    for n in 0..PRODUCTS {
        let new = new_product(format!("p{n}"), 1_000);
        products.push(store.insert_product(&new).await.unwrap().0.id);
    }
    let shard = |id: ProductId| shard_of(ItemKey::Product(id), SHARDS);
    assert!(
        products
            .iter()
            .map(|p| shard(*p))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 2
    );
    let stock_after = |reserved: u64, sold: u64| ProductStock {
        total: 1_000,
        available: 1_000 - reserved - sold,
        reserved,
        sold,
        written_off: 0,
    };
    // Per shard: its products' orders and counts.
    let mut placed: Vec<Vec<Mutation>> = vec![Vec::new(); SHARDS as usize];
    let mut order_ids = Vec::new();
    for product in &products {
        for n in 0..ORDERS {
            let order = pending_order(*product, &format!("u{n}"), now);
            order_ids.push((*product, order.id));
            placed[shard(*product) as usize].push(Mutation::OrderPlaced(order));
        }
        placed[shard(*product) as usize].push(Mutation::ProductCounts {
            id: *product,
            stock: stock_after(ORDERS, 0),
            views_delta: 3,
            next_due_at: Some(now),
        });
    }
    fn batches<'a>(
        mutations: &'a [Vec<Mutation>],
        epoch_of: &dyn Fn(u32) -> u64,
    ) -> Vec<ShardBatch<'a>> {
        mutations
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.is_empty())
            .map(|(shard, m)| ShardBatch {
                shard: shard as u32,
                epoch: epoch_of(shard as u32),
                mutations: m,
            })
            .collect()
    }
    let ours = |shard: u32| epochs[shard as usize];
    store
        .commit_batches(&batches(&placed, &ours))
        .await
        .unwrap();
    let probe = db.probe().await;
    for product in &products {
        let counts = probe.assert_consistent(product.0).await;
        assert_eq!(counts.reserved, ORDERS as i64);
        assert_eq!(probe.orders(product.0).await.len(), ORDERS as usize);
    }
    let busy: Vec<u32> = (0..SHARDS)
        .filter(|s| !placed[*s as usize].is_empty())
        .collect();
    for s in &busy {
        assert_eq!(probe.shard_batches(*s).await, 1, "shard {s}");
    }

    // Every order paid, in one transaction again.
    let mut paid: Vec<Vec<Mutation>> = vec![Vec::new(); SHARDS as usize];
    for (product, id) in &order_ids {
        paid[shard(*product) as usize].push(Mutation::OrderUpdated {
            id: *id,
            status: OrderStatus::Paid,
            updated_at: now,
        });
    }
    for product in &products {
        paid[shard(*product) as usize].push(Mutation::ProductCounts {
            id: *product,
            stock: stock_after(0, ORDERS),
            views_delta: 0,
            next_due_at: None,
        });
    }
    // With one shard's epoch not ours, nothing of it is written, for any shard.
    let fenced = busy[busy.len() / 2];
    let stale = |shard: u32| epochs[shard as usize] + u64::from(shard == fenced);
    match store.commit_batches(&batches(&paid, &stale)).await {
        Err(CommitError::Fenced { shard, .. }) => assert_eq!(shard, fenced),
        other => panic!("expected shard {fenced} fenced, got {other:?}"),
    }
    for product in &products {
        let counts = probe.assert_consistent(product.0).await;
        assert_eq!((counts.reserved, counts.sold), (ORDERS as i64, 0));
    }
    for s in &busy {
        assert_eq!(probe.shard_batches(*s).await, 1, "shard {s}");
    }
    store.commit_batches(&batches(&paid, &ours)).await.unwrap();
    for product in &products {
        let counts = probe.assert_consistent(product.0).await;
        assert_eq!((counts.reserved, counts.sold), (0, ORDERS as i64));
        assert!(probe.orders(product.0).await.iter().all(|o| o.2 == "PAID"));
    }
    for s in &busy {
        assert_eq!(probe.shard_batches(*s).await, 2, "shard {s}");
    }
}

/// A commit's connection belongs to the runtime that commits. The server opens
/// its store on the main runtime and commits on an arbiter (a runtime of its
/// own): a connection's socket is watched by the runtime it was opened on, so a
/// commit on one the main runtime opened had each of its replies pass through
/// that runtime's thread first. Here the store is opened on one runtime and
/// committed to from another; once the first is gone, commits still go through.
fn commits_need_only_the_committing_runtime(backend: Backend) {
    use flashstock::domain::{ProductId, ProductStock, UnixMillis};
    use flashstock::persistence::{Mutation, ShardBatch};

    let opening = tokio::runtime::Runtime::new().unwrap();
    let opened = opening.block_on(async {
        let db = TestDb::new(backend).await?;
        let store = flashstock::persistence::connect(&db.url, 4, Default::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.shard_count(1).await.unwrap(), 1);
        let epoch = store.acquire_shards(&[0], "node-a").await.unwrap()[0];
        let new = new_product("p".into(), 10);
        let product = store.insert_product(&new).await.unwrap().0.id;
        Some((db, store, epoch, product))
    });
    let Some((db, store, epoch, product)) = opened else {
        return;
    };
    let place = |product: ProductId, n: u64| {
        let now = UnixMillis::now();
        vec![
            Mutation::OrderPlaced(pending_order(product, &format!("u{n}"), now)),
            Mutation::ProductCounts {
                id: product,
                stock: ProductStock {
                    total: 10,
                    available: 10 - n,
                    reserved: n,
                    sold: 0,
                    written_off: 0,
                },
                views_delta: 0,
                next_due_at: None,
            },
        ]
    };
    let committing = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let commit = |mutations: Vec<Mutation>| {
        let batch = [ShardBatch {
            shard: 0,
            epoch,
            mutations: &mutations,
        }];
        committing.block_on(store.commit_batches(&batch))
    };
    commit(place(product, 1)).expect("the first commit");
    drop(opening);
    commit(place(product, 2)).expect("a commit after the opening runtime is gone");
    committing.block_on(async {
        let probe = db.probe().await;
        assert_eq!(probe.orders(product.0).await.len(), 2);
        assert_eq!(probe.assert_consistent(product.0).await.reserved, 2);
        // Its kept connection goes back to the pool from within a runtime.
        drop(store);
    });
}

on_both_backends! { blocking:
    committing_runtime => commits_need_only_the_committing_runtime,
}

on_both_backends! {
    many_shards_one_transaction => one_transaction_for_many_shards,
    fenced_writer => a_fenced_writer_writes_nothing_and_reloads,
    sigkill_under_load => sigkill_under_load_loses_no_acknowledged_order,
    restart_continues => restart_continues_where_it_stopped,
    sigterm_flushes => sigterm_flushes_memory_acks,
}
