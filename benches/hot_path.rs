//! The hot path in process, without HTTP: reservations per second on one hot
//! product's actor, `CONCURRENCY` callers at once, with write-behind to SQLite and
//! to MariaDB, acknowledged `durable` (after commit) and `memory` (at decision).
//!
//! `cargo bench --bench hot_path`. MariaDB is found at `FLASHSTOCK_TEST_MYSQL_URL`
//! (default `mysql://flashstock:flashstock@127.0.0.1:3306`); without it those
//! cases are skipped with a message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flashstock::actors::{Engine, EngineError};
use flashstock::app::Node;
use flashstock::config::Cli;
use flashstock::domain::{ProductId, Quantity, UnixMillis, UserId};
use flashstock::persistence::NewProduct;

/// The same allocator as the `flashstock` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Callers at once: about what 256 HTTP connections put in flight.
const CONCURRENCY: usize = 256;
/// Distinct buyers cycled through (no per-user limit is set).
const BUYERS: usize = 10_000;

struct Target {
    name: String,
    node: Node,
    product: ProductId,
    _dir: tempfile::TempDir,
}

async fn start(database_url: &str, ack: &str, name: String, dir: tempfile::TempDir) -> Target {
    let cli = Cli::parse_from([
        "flashstock",
        "--database-url",
        database_url,
        "--ack",
        ack,
        "--shards",
        "16",
    ]);
    let node = Node::start(&cli.settings).await.expect("node starts");
    let (info, _) = node
        .engine
        .create_product(NewProduct {
            name: "hot".into(),
            price: 1_000,
            stock: 1_000_000_000,
            per_user_limit: None,
            sale_starts_at: None,
            sale_ends_at: None,
            created_at: UnixMillis::now(),
        })
        .await
        .expect("product");
    Target {
        name,
        node,
        product: info.id,
        _dir: dir,
    }
}

async fn mysql_database() -> Option<String> {
    let server = std::env::var("FLASHSTOCK_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://flashstock:flashstock@127.0.0.1:3306".into());
    let pool = match sqlx::MySqlPool::connect(&format!("{server}/")).await {
        Ok(pool) => pool,
        Err(error) => {
            eprintln!("SKIPPED MariaDB cases: {server} unreachable: {error}");
            return None;
        }
    };
    let name = format!("fs_bench_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .ok()?;
    }
    Some(format!("{server}/{name}"))
}

/// Places `count` orders with `CONCURRENCY` callers; returns the elapsed time.
async fn place(
    engine: Arc<Engine>,
    product: ProductId,
    buyers: Arc<Vec<UserId>>,
    count: u64,
) -> Duration {
    let quantity = Quantity::new(1, 10).unwrap();
    let started = Instant::now();
    let per_caller = count.div_ceil(CONCURRENCY as u64);
    let callers: Vec<_> = (0..CONCURRENCY)
        .map(|caller| {
            let (engine, buyers) = (engine.clone(), buyers.clone());
            tokio::spawn(async move {
                for i in 0..per_caller {
                    let buyer = buyers[(caller + i as usize * CONCURRENCY) % BUYERS].clone();
                    // A full write-behind queue answers 503: back off and retry, as a
                    // client honouring Retry-After would (only `memory` outruns it).
                    loop {
                        match engine
                            .place_order(product, buyer.clone(), quantity, None)
                            .await
                        {
                            Ok(_) => break,
                            Err(EngineError::Unavailable(_)) => {
                                tokio::time::sleep(Duration::from_millis(1)).await
                            }
                            Err(error) => panic!("order refused: {error}"),
                        }
                    }
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    started.elapsed()
}

fn hot_product(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let buyers: Arc<Vec<UserId>> = Arc::new(
        (0..BUYERS)
            .map(|n| UserId::parse(&format!("buyer-{n}")).unwrap())
            .collect(),
    );
    let targets: Vec<Target> = runtime.block_on(async {
        let mut targets = Vec::new();
        for ack in ["durable", "memory"] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            targets.push(start(&url, ack, format!("sqlite/{ack}"), dir).await);
        }
        if let Some(url) = mysql_database().await {
            for ack in ["durable", "memory"] {
                let dir = tempfile::tempdir().unwrap();
                targets.push(start(&url, ack, format!("mariadb/{ack}"), dir).await);
            }
        }
        targets
    });

    let mut group = c.benchmark_group("reserve_one_hot_product");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for target in &targets {
        group.bench_function(&target.name, |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                place(
                    target.node.engine.clone(),
                    target.product,
                    buyers.clone(),
                    iters,
                )
            });
        });
    }
    group.finish();
    runtime.block_on(async {
        for target in targets {
            target.node.shutdown().await;
        }
    });
}

criterion_group!(benches, hot_product);
criterion_main!(benches);
