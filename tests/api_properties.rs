//! A property of the whole API: after any sequence of orders, payments,
//! cancellations, expiries, restocks and returns, a product's counts are the
//! same live and in the database, add up to its total stock, and equal the sums
//! over its stored orders. Runs against a real server on SQLite and MariaDB.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Backend, Server, TestDb, admin_token, token};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Sequences per backend: each runs against the live server, so few but long.
const CASES: u32 = 16;
const OPS_MAX: usize = 40;
/// Rounds of `CASES` sequences at most, until one reached a completed return.
const ROUNDS_MAX: usize = 4;
/// Timers short enough that expiry, shipping and delivery happen within a case.
const TIMERS: &[&str] = &[
    "--reservation-ttl",
    "600ms",
    "--shipping-delay",
    "20ms",
    "--delivery-delay",
    "20ms",
];
/// Longer than every timer above plus the actors' tick: after it, nothing moves.
const SETTLE: Duration = Duration::from_millis(1_000);

#[derive(Clone, Debug)]
enum Op {
    Order {
        user: u8,
        quantity: u64,
        key: Option<u8>,
    },
    Pay {
        pick: usize,
        success: bool,
    },
    Cancel {
        pick: usize,
        by_admin: bool,
    },
    Return {
        pick: usize,
    },
    CompleteReturn {
        pick: usize,
        restock: bool,
    },
    Restock {
        delta: i64,
    },
    Wait {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..4, 1u64..=3, proptest::option::of(0u8..3))
            .prop_map(|(user, quantity, key)| Op::Order { user, quantity, key }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(pick, success)| Op::Pay { pick, success }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, by_admin)| Op::Cancel { pick, by_admin }),
        3 => any::<usize>().prop_map(|pick| Op::Return { pick }),
        3 => (any::<usize>(), any::<bool>())
            .prop_map(|(pick, restock)| Op::CompleteReturn { pick, restock }),
        1 => (-6i64..=8).prop_map(|delta| Op::Restock { delta }),
        // Long enough for reservations to expire and paid orders to be delivered
        // (and so returnable) within a sequence.
        3 => prop_oneof![Just(50u64), Just(250), Just(400)].prop_map(|ms| Op::Wait { ms }),
    ]
}

/// An order placed in this case, whose it is, and the status its last reply
/// showed.
struct Placed {
    id: String,
    owner: String,
    status: String,
}

/// Picks the `n`th order, among those last seen in `status` if there are any:
/// returns then mostly target paid orders and completions requested returns,
/// so the sequences reach the end of the lifecycle, not only refusals.
fn pick<'a>(placed: &'a [Placed], n: usize, status: Option<&str>) -> Option<&'a Placed> {
    let preferred: Vec<&Placed> = placed
        .iter()
        .filter(|p| status.is_some_and(|s| p.status == s))
        .collect();
    if !preferred.is_empty() {
        return Some(preferred[n % preferred.len()]);
    }
    (!placed.is_empty()).then(|| &placed[n % placed.len()])
}

/// Successful returns and completed returns over a whole run, to show the
/// property was checked on sequences that reach them.
#[derive(Default)]
struct Reached {
    returns: std::sync::atomic::AtomicU32,
    completions: std::sync::atomic::AtomicU32,
}

async fn run_case(
    server: &Server,
    db: &TestDb,
    ops: Vec<Op>,
    reached: &Reached,
) -> Result<(), TestCaseError> {
    let product = server.create_product(10, Some(4)).await;
    let admin = admin_token();
    let mut placed: Vec<Placed> = Vec::new();
    for op in ops {
        let mut target = None;
        let reply = match op {
            Op::Order {
                user,
                quantity,
                key,
            } => {
                let owner = token(&format!("buyer-{user}"), false);
                let key = key.map(|k| format!("p{product}-u{user}-k{k}"));
                let reply = server
                    .order(&owner, product, quantity, key.as_deref())
                    .await;
                if reply.0 == StatusCode::CREATED {
                    let id = reply.1["id"].as_str().unwrap().to_string();
                    if !placed.iter().any(|p| p.id == id) {
                        let status = "PENDING_PAYMENT".to_string();
                        placed.push(Placed { id, owner, status });
                    }
                }
                reply
            }
            Op::Pay { pick: n, success } => match pick(&placed, n, Some("PENDING_PAYMENT")) {
                Some(p) => {
                    target = Some(p.id.clone());
                    let outcome = if success { "success" } else { "failure" };
                    transition(
                        server,
                        &p.owner,
                        &p.id,
                        "pay",
                        Some(json!({"outcome": outcome})),
                    )
                    .await
                }
                None => continue,
            },
            Op::Cancel { pick: n, by_admin } => match pick(&placed, n, None) {
                Some(p) => {
                    target = Some(p.id.clone());
                    let who = if by_admin { &admin } else { &p.owner };
                    transition(server, who, &p.id, "cancel", None).await
                }
                None => continue,
            },
            Op::Return { pick: n } => match pick(&placed, n, Some("PAID")) {
                Some(p) => {
                    target = Some(p.id.clone());
                    let reply = transition(server, &p.owner, &p.id, "return", None).await;
                    if reply.0.is_success() {
                        reached.returns.fetch_add(1, Ordering::Relaxed);
                    }
                    reply
                }
                None => continue,
            },
            Op::CompleteReturn { pick: n, restock } => {
                match pick(&placed, n, Some("RETURN_REQUESTED")) {
                    Some(p) => {
                        target = Some(p.id.clone());
                        let body = Some(json!({"restock": restock}));
                        let reply =
                            transition(server, &admin, &p.id, "return/complete", body).await;
                        if reply.0.is_success() {
                            reached.completions.fetch_add(1, Ordering::Relaxed);
                        }
                        reply
                    }
                    None => continue,
                }
            }
            Op::Restock { delta } if delta != 0 => {
                server
                    .request(
                        Method::POST,
                        &format!("/v1/products/{product}/stock"),
                        Some(&admin),
                        Some(json!({"delta": delta})),
                        None,
                    )
                    .await
            }
            Op::Restock { .. } => continue,
            Op::Wait { ms } => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                continue;
            }
        };
        // Every answer is a success or a documented refusal, never a failure.
        let key_reused = reply.0 == StatusCode::UNPROCESSABLE_ENTITY
            && reply.1["code"] == "idempotency_key_reused";
        prop_assert!(
            reply.0.is_success() || reply.0 == StatusCode::CONFLICT || key_reused,
            "unexpected reply {}: {}",
            reply.0,
            reply.1
        );
        if let (true, Some(id)) = (reply.0 == StatusCode::OK, &target)
            && let Some(order) = placed.iter_mut().find(|p| p.id == *id)
        {
            order.status = reply.1["status"].as_str().unwrap_or_default().to_string();
        }
    }

    tokio::time::sleep(SETTLE).await;
    let probe = db.probe().await;
    // Writes are behind the actor by at most a batch: wait (boundedly) for the
    // database to hold what the actor shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (live, stored) = loop {
        let live = server.product(product).await;
        let stored = probe.product_counts(product).await;
        let same = live["total_stock"] == stored.total
            && live["stock_available"] == stored.available
            && live["stock_reserved"] == stored.reserved
            && live["sold"] == stored.sold
            && live["written_off"] == stored.written_off;
        // Every reservation expires within the settle time; on a loaded machine
        // the last expiry may still be on its way to the database.
        if (same && stored.reserved == 0) || Instant::now() > deadline {
            break (live, stored);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    prop_assert_eq!(
        &live["stock_available"],
        &json!(stored.available),
        "live {} vs stored {:?}",
        live,
        stored
    );
    prop_assert_eq!(&live["stock_reserved"], &json!(stored.reserved));
    prop_assert_eq!(&live["sold"], &json!(stored.sold));
    prop_assert_eq!(&live["written_off"], &json!(stored.written_off));
    prop_assert_eq!(&live["total_stock"], &json!(stored.total));
    // Counts add up, and equal the sums over the stored orders.
    probe.assert_consistent(product).await;
    // After the settle time no reservation can be left: all expired or paid.
    prop_assert_eq!(stored.reserved, 0);
    Ok(())
}

async fn transition(
    server: &Server,
    who: &str,
    id: &str,
    action: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    server
        .request(
            Method::POST,
            &format!("/v1/orders/{id}/{action}"),
            Some(who),
            body,
            None,
        )
        .await
}

fn random_api_sequences_keep_counts_consistent(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = runtime.block_on(TestDb::new(backend)) else {
        return;
    };
    let server = Server::start(&db, TIMERS);
    let reached = Reached::default();
    // More rounds of sequences (a bounded number) until some went all the way
    // through a return: reaching it takes a payment, a delivery and two more
    // steps on the same order, which a round of random sequences may miss.
    for _ in 0..ROUNDS_MAX {
        let mut runner = TestRunner::new(Config {
            cases: CASES,
            max_shrink_iters: 32,
            ..Config::default()
        });
        let result = runner.run(&proptest::collection::vec(op(), 1..OPS_MAX), |ops| {
            runtime.block_on(run_case(&server, &db, ops, &reached))
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
        if reached.completions.load(Ordering::Relaxed) > 0 {
            break;
        }
    }
    // The sequences went through the whole lifecycle, not only its first steps.
    let (returns, completions) = (
        reached.returns.load(Ordering::Relaxed),
        reached.completions.load(Ordering::Relaxed),
    );
    eprintln!("{backend:?}: {returns} returns requested, {completions} completed");
    assert!(
        returns > 0 && completions > 0,
        "no sequence reached a return"
    );
}

on_both_backends! { blocking:
    random_sequences => random_api_sequences_keep_counts_consistent,
}
