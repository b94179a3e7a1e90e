//! What a write-behind batch costs MariaDB: the engine's own `commit_batches`,
//! fed batches shaped as `loadtest hot` makes them (one product, users cycled
//! from 10,000, every order `PENDING_PAYMENT`, the product's counts), committed
//! one after another on a fresh database.
//!
//! `cargo bench --bench commit_cost -- [--rows 95] [--batches 2000] [--warm-up 1000]`
//!
//! MariaDB is found at `--mysql` (default `FLASHSTOCK_TEST_MYSQL_URL`, else
//! `mysql://flashstock:flashstock@127.0.0.1:3306`); the bench creates and drops
//! its own database there. It prints the wall time of a batch and, when the
//! server runs on this machine (`--server-pid`, else the one `mariadbd`), the
//! server's CPU per order row from `/proc`, over the batches after the warm-up.
//!
//! `--after-migrate SQL` (repeatable) runs statements after the migrations, to
//! measure a variant of the schema (say, without an index). `--callgrind`
//! switches callgrind's instrumentation of the server on for the measured
//! batches only, for a server started as
//! `valgrind --tool=callgrind --instr-atstart=no mariadbd ...`: the dump's total
//! (`callgrind_annotate FILE | grep TOTALS`) is then theirs alone.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use flashstock::domain::{
    Order, OrderId, OrderStatus, ProductId, ProductStock, UnixMillis, UserId,
};
use flashstock::persistence::{Mutation, NewProduct, ShardBatch, Timeouts, connect};
use sqlx::Connection as _;

/// The same allocator as the `flashstock` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DATABASE: &str = "fs_commit_cost";
/// Users cycled through, as `loadtest hot` does.
const USERS: u64 = 10_000;
/// How long a reservation is held, as the server's default.
const RESERVATION_TTL_MS: i64 = 600_000;

#[derive(Parser, Debug)]
struct Args {
    /// Orders in a batch (~95 under `loadtest hot` with 256 connections).
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    rows: u64,
    /// Batches measured, after the warm-up.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batches: u64,
    /// Batches committed first and not measured (the table grows as under load).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    warm_up: u64,
    /// MariaDB without a database name.
    #[arg(
        long,
        env = "FLASHSTOCK_TEST_MYSQL_URL",
        default_value = "mysql://flashstock:flashstock@127.0.0.1:3306"
    )]
    mysql: String,
    /// The server's process, for its CPU time (default: the one `mariadbd`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Statements run after the migrations.
    #[arg(long)]
    after_migrate: Vec<String>,
    /// Switch the server's callgrind instrumentation on for the measured batches.
    #[arg(long)]
    callgrind: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Runtime::new()?.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let base = args.mysql.trim_end_matches('/');
    let mut admin = sqlx::MySqlConnection::connect(base)
        .await
        .with_context(|| format!("connecting to {}", flashstock::app::redact(base)))?;
    for sql in [
        format!("DROP DATABASE IF EXISTS {DATABASE}"),
        format!("CREATE DATABASE {DATABASE}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
    }
    let measured = measure(&args, &format!("{base}/{DATABASE}")).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {DATABASE}")))
        .execute(&mut admin)
        .await?;
    println!("{}", measured?);
    Ok(())
}

async fn measure(args: &Args, url: &str) -> anyhow::Result<String> {
    // The server's pool size: with fewer than four connections none is kept
    // from one commit to the next, and every batch pays the pool's two pings.
    let connections = flashstock::config::Cli::parse_from(["flashstock"])
        .settings
        .db_connections_max;
    let store = connect(url, connections, Timeouts::default()).await?;
    store.migrate().await?;
    let mut conn = sqlx::MySqlConnection::connect(url).await?;
    for sql in &args.after_migrate {
        sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .execute(&mut conn)
            .await
            .with_context(|| format!("running {sql:?}"))?;
    }
    let shards = store.shard_count(1).await?;
    anyhow::ensure!(shards == 1, "a fresh database holds one shard");
    let epoch = store.acquire_shards(&[0], "commit-cost").await?[0];
    let total = (args.warm_up + args.batches) * args.rows;
    let (product, mut stock) = store
        .insert_product(&NewProduct {
            name: "hot".into(),
            price: 500,
            stock: total,
            per_user_limit: None,
            sale_starts_at: None,
            sale_ends_at: None,
            created_at: UnixMillis::now(),
        })
        .await?;
    let users: Vec<UserId> = (0..USERS)
        .map(|n| UserId::parse(&format!("loadtest-commit-cost-{n}")))
        .collect::<Result<_, _>>()?;
    let server = match args.server_pid {
        Some(pid) => Some(pid),
        None => only_mariadbd(),
    };
    let start = UnixMillis::now().0;
    let mut placed = 0u64;
    let mut batch = |stock: &mut ProductStock| {
        let mut mutations = Vec::with_capacity(args.rows as usize + 1);
        for _ in 0..args.rows {
            // One order a millisecond apart at most: ids and times grow as a
            // product's do under load.
            let at = start + (placed / 50) as i64;
            let order = Order {
                id: OrderId(ulid::Ulid::from_parts(at as u64, u128::from(placed))),
                user_id: users[(placed % USERS) as usize].clone(),
                product_id: product.id,
                quantity: 1,
                unit_price: product.price,
                status: OrderStatus::PendingPayment,
                created_at: UnixMillis(at),
                updated_at: UnixMillis(at),
                expires_at: UnixMillis(at + RESERVATION_TTL_MS),
            };
            stock
                .reserve(1)
                .expect("stock covers every batch of the run");
            mutations.push(Mutation::OrderPlaced(order));
            placed += 1;
        }
        mutations.push(counts(product.id, *stock, start));
        mutations
    };
    for _ in 0..args.warm_up {
        let mutations = batch(&mut stock);
        commit(&store, epoch, &mutations).await?;
    }
    let batches: Vec<Vec<Mutation>> = (0..args.batches).map(|_| batch(&mut stock)).collect();
    if args.callgrind {
        callgrind(server, "on")?;
    }
    let cpu_before = server.map(cpu_ticks).transpose()?;
    let started = Instant::now();
    for mutations in &batches {
        commit(&store, epoch, mutations).await?;
    }
    let elapsed = started.elapsed();
    let cpu_after = server.map(cpu_ticks).transpose()?;
    if args.callgrind {
        callgrind(server, "off")?;
    }
    let rows = args.batches * args.rows;
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut conn)
        .await?;
    anyhow::ensure!(
        stored as u64 == total,
        "{stored} order rows stored, {total} committed"
    );
    let mut report = format!(
        "{} batches of {} orders (after {} to warm up): {:.2} ms a batch, {:.2} us an order row",
        args.batches,
        args.rows,
        args.warm_up,
        per(elapsed, args.batches) * 1e3,
        per(elapsed, rows) * 1e6,
    );
    if let (Some(pid), Some(before), Some(after)) = (server, cpu_before, cpu_after) {
        let seconds = (after - before) as f64 / TICKS_PER_SECOND;
        report.push_str(&format!(
            "; the server (pid {pid}) {:.2} us of CPU an order row",
            seconds / rows as f64 * 1e6
        ));
    }
    Ok(report)
}

fn counts(id: ProductId, stock: ProductStock, start: i64) -> Mutation {
    Mutation::ProductCounts {
        id,
        stock,
        views_delta: 0,
        next_due_at: Some(UnixMillis(start + RESERVATION_TTL_MS)),
    }
}

async fn commit(
    store: &flashstock::persistence::SharedStore,
    epoch: u64,
    mutations: &[Mutation],
) -> anyhow::Result<()> {
    let batch = ShardBatch {
        shard: 0,
        epoch,
        mutations,
    };
    store.commit_batches(&[batch]).await?;
    Ok(())
}

fn per(elapsed: Duration, count: u64) -> f64 {
    elapsed.as_secs_f64() / count as f64
}

/// The pid of the one `mariadbd` running here, if there is exactly one.
fn only_mariadbd() -> Option<u32> {
    let out = Command::new("pidof").arg("mariadbd").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        [pid] => pid.parse().ok(),
        _ => None,
    }
}

/// User and system CPU of a process so far, in clock ticks (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(n - 3)
            .with_context(|| format!("field {n} of /proc/{pid}/stat"))?
            .parse()?)
    };
    Ok(field(14)? + field(15)?)
}

/// `/proc` counts CPU time in USER_HZ ticks, 100 a second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

fn callgrind(server: Option<u32>, state: &str) -> anyhow::Result<()> {
    let pid = server
        .context("--callgrind needs the server's pid")?
        .to_string();
    callgrind_control(&["-i", state, &pid])?;
    if state == "off" {
        callgrind_control(&["-d", &pid])?;
    }
    Ok(())
}

/// Runs `callgrind_control ARGS`, which exits 0 even when it finds no callgrind
/// run with that pid: its "Error: ..." line is the failure.
fn callgrind_control(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running callgrind_control")?;
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(
        out.status.success() && !said.contains("Error:"),
        "callgrind_control {} failed: {}",
        args.join(" "),
        said.trim()
    );
    Ok(())
}
