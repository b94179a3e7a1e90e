//! The flash-sale comparison: flashstock and the lock-based designs behind the
//! same `POST /v1/orders`, on the same MariaDB and Redis, driven by the same
//! load engine (`hot`, then `drop`), each checked against its database.
//!
//! `cargo bench --bench flash_sale -- [--duration 10s] [--connections 256]
//! [--out target/flash-sale] [--quick] [--only a,b] [--rounds 1] [--pin]
//! [--loader-nice 0] [--loader-scheduling batch]`
//!
//! Each server runs in a child process (this binary again, with
//! `FLASH_SALE_SERVE` set), so the loader and the server are separate processes
//! as they would be in production. Results go to `report.json`, `report.md`
//! (the table; where the machine's time went in `hot`, per order, for each
//! process; then `flashstock-durable`'s `hot` row against its targets) and
//! `report.svg` in the output folder.

mod cpu;
mod report;
mod servers;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use flashstock::http::Auth;
use flashstock::loadtest::client::{self, Budget, Endpoint, Policy, Progress, Scheduling, Stats};
use flashstock::loadtest::scenario::Driver;
use sqlx::Row;

use report::{Row as ResultRow, write_reports};
use servers::Baseline;

/// The same allocator as the `flashstock` binary, for every server it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const JWT_SECRET: &str = "flash-sale-bench-secret";
const STRATEGIES: &[&str] = &[
    "noop",
    "mysql-for-update",
    "mysql-optimistic",
    "mysql-conditional",
    "redis-lock",
    "redis-lua",
    "flashstock-durable",
    "flashstock-memory",
    "flashstock-sqlite",
];
/// Stock of the hot product: never runs out.
const HOT_STOCK: u64 = 1_000_000_000;
/// Distinct buyers cycled through in `hot`.
const HOT_USERS: usize = 10_000;

#[derive(Debug, Parser)]
struct Args {
    /// Length of the `hot` phase.
    #[arg(long, default_value = "10s", value_parser = flashstock::config::parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 256)]
    connections: usize,
    #[arg(long, default_value = "target/flash-sale")]
    out: PathBuf,
    /// Short phases and a small drop, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Only these strategies (comma-separated).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(STRATEGIES))]
    only: Vec<String>,
    /// Run every strategy this many times, in turn (strategy after strategy,
    /// round after round), and report each one's median round: on a shared or
    /// virtual machine one run can be off by 15% either way.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Keep servers and loader off each other's cores: every server on the
    /// first half of the cores, the loader on the rest (MariaDB and Redis are
    /// left to the scheduler), as if they ran on machines of their own.
    #[arg(long)]
    pin: bool,
    /// The loader's threads at this nice value (0..=19), everything else at
    /// its own: above 0, the servers get a core first when the loader wants
    /// one too, as they would if the clients ran on other machines, while all
    /// still share every core. Where the kernel groups tasks by session
    /// (autogroup), a nice value ranks the loader only against this process's
    /// children, the servers; MariaDB and Redis, in sessions of their own, are
    /// weighed against this session as a whole.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(0..=19))]
    loader_nice: i32,
    /// The loader threads' scheduling policy, as `flashstock loadtest
    /// --scheduling` takes it: `batch` (the default) takes the same share of
    /// the cores but does not preempt a running server thread when a reply
    /// wakes it; `normal` is the kernel's usual policy.
    #[arg(long, value_enum, default_value_t = Policy::Batch)]
    loader_scheduling: Policy,
    #[arg(
        long,
        env = "FLASHSTOCK_TEST_MYSQL_URL",
        default_value = "mysql://flashstock:flashstock@127.0.0.1:3306"
    )]
    mysql: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Render the reports again from an earlier `report.json`, without running.
    #[arg(long)]
    render: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    // Every server here and the loader take memory as flashstock does.
    flashstock::memory::use_small_pages();
    if let Ok(strategy) = std::env::var("FLASH_SALE_SERVE") {
        return serve_child(&strategy);
    }
    let args = Args::parse();
    if let Some(json) = &args.render {
        let summary = report::render_again(json, &args.out)?;
        println!("{summary}");
        return Ok(());
    }
    let pinned = if args.pin {
        let (servers, loader) = split_cores()?;
        // Set before the runtime starts: its threads inherit the mask.
        pin_to(&loader)?;
        Some(report::Pinning { servers, loader })
    } else {
        None
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(compare(args, pinned))
}

/// Runs the loader (collecting the ids of accepted orders), its threads
/// scheduled as `args` says.
async fn drive(
    args: &Args,
    endpoint: &Endpoint,
    budget: Budget,
    connections: usize,
) -> anyhow::Result<Stats> {
    let scheduling = loader_scheduling(args);
    let progress = Progress::default();
    client::run(endpoint, budget, connections, true, progress, scheduling).await
}

/// What the loader's threads take, from the options.
fn loader_scheduling(args: &Args) -> Scheduling {
    Scheduling {
        policy: args.loader_scheduling,
        nice: args.loader_nice,
    }
}

/// This process's cores for `--pin`: the lower half (at least one) for the
/// servers, the rest for the loader.
fn split_cores() -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    let mut all = allowed_cores();
    anyhow::ensure!(
        all.len() >= 2,
        "--pin needs at least two cores, this process has {}",
        all.len()
    );
    let loader = all.split_off(all.len() / 2);
    Ok((all, loader))
}

/// The cores this process may run on.
fn allowed_cores() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    sched_getaffinity(Pid::from_raw(0))
        .map(|set| {
            (0..CpuSet::count())
                .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default()
}

fn join(cores: &[usize]) -> String {
    cores
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Restricts this thread, and every thread it starts afterwards, to `cores`.
fn pin_to(cores: &[usize]) -> anyhow::Result<()> {
    anyhow::ensure!(!cores.is_empty(), "no cores to run on");
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;
    let mut set = CpuSet::new();
    for &cpu in cores {
        set.set(cpu)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set)?;
    Ok(())
}

/// The child process: serve one strategy on 127.0.0.1:0 and print the URL.
fn serve_child(strategy: &str) -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let cores: Vec<usize> = var("FLASH_SALE_CORES")
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if !cores.is_empty() {
        pin_to(&cores)?;
    }
    if let Some(flavour) = strategy.strip_prefix("flashstock-") {
        let ack = if flavour == "memory" {
            "memory"
        } else {
            "durable"
        };
        let cli = flashstock::config::Cli::parse_from([
            "flashstock",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &var("FLASH_SALE_DATABASE_URL"),
            "--ack",
            ack,
            "--jwt-secret",
            JWT_SECRET,
        ]);
        flashstock::telemetry::init(false);
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(flashstock::app::serve(cli.settings));
    }
    let baseline =
        Baseline::parse(strategy).ok_or_else(|| anyhow::anyhow!("unknown {strategy}"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // The same listening queue as flashstock's, so a burst of connections
        // meets the same kernel on every server.
        let listener =
            tokio::net::TcpListener::from_std(flashstock::app::listen("127.0.0.1:0".parse()?)?)?;
        println!("listening on http://{}", listener.local_addr()?);
        servers::serve(
            baseline,
            listener,
            JWT_SECRET,
            &var("FLASH_SALE_DATABASE_URL"),
            &var("FLASH_SALE_REDIS_URL"),
            &var("FLASH_SALE_NAMESPACE"),
        )
        .await
    })
}

struct ServerProcess {
    child: Child,
    url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(
    strategy: &str,
    database_url: &str,
    redis_url: &str,
    namespace: &str,
    cores: &[usize],
) -> anyhow::Result<ServerProcess> {
    let mut child = Command::new(std::env::current_exe()?)
        .env("FLASH_SALE_SERVE", strategy)
        .env("FLASH_SALE_DATABASE_URL", database_url)
        .env("FLASH_SALE_REDIS_URL", redis_url)
        .env("FLASH_SALE_NAMESPACE", namespace)
        .env("FLASH_SALE_CORES", join(cores))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, url)) = line.split_once("listening on ") {
                let _ = tx.send(url.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow::anyhow!("{strategy} did not start"))?;
    Ok(ServerProcess { child, url })
}

/// Where a strategy keeps its orders, for the correctness check.
enum Storage {
    None,
    MySql(sqlx::MySqlPool),
    Sqlite(sqlx::SqlitePool),
}

impl Storage {
    /// Ids of the stored orders of `product`.
    async fn order_ids(&self, product: u64) -> anyhow::Result<HashSet<String>> {
        let sql = "SELECT id FROM orders WHERE product_id = ?";
        let ids = match self {
            Storage::None => HashSet::new(),
            Storage::MySql(pool) => sqlx::query(sql)
                .bind(product as i64)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect(),
            Storage::Sqlite(pool) => sqlx::query(sql)
                .bind(product as i64)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect(),
        };
        Ok(ids)
    }
}

async fn compare(mut args: Args, pinned: Option<report::Pinning>) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=10_000).contains(&args.connections),
        "--connections must be 1..=10000"
    );
    let server = args.mysql.trim_end_matches('/');
    let options: sqlx::mysql::MySqlConnectOptions = server.parse()?;
    anyhow::ensure!(
        options.get_database().is_none(),
        "--mysql / FLASHSTOCK_TEST_MYSQL_URL names the server, without a database \
         (each strategy gets a database of its own): got {}",
        flashstock::app::redact(server)
    );
    args.mysql = server.to_string();
    // Made now, so that a path that cannot be written fails before the run,
    // not after it.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let phases = if args.quick {
        Phases {
            duration: args.duration.min(Duration::from_secs(3)),
            drop_users: 2_000,
            drop_stock: 200,
        }
    } else {
        Phases {
            duration: args.duration,
            drop_users: 10_000,
            drop_stock: 1_000,
        }
    };
    let server_cores = pinned.as_ref().map_or(&[][..], |p| &p.servers);
    let strategies: Vec<&str> = STRATEGIES
        .iter()
        .copied()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|o| o == s))
        .collect();
    let admin = sqlx::MySqlPool::connect(&format!("{}/", args.mysql)).await?;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let mut rows = Vec::new();
        for strategy in &strategies {
            if args.rounds > 1 {
                eprintln!("== {strategy} (round {round} of {})", args.rounds);
            } else {
                eprintln!("== {strategy}");
            }
            let run = run_strategy(&args, &admin, server_cores, round, phases, strategy);
            rows.extend(run.await?);
        }
        rounds.push(rows);
    }
    let rows = report::medians(&rounds);
    let summary = write_reports(
        &args.out,
        args.connections,
        phases.duration.as_secs_f64(),
        pinned.as_ref(),
        loader_scheduling(&args),
        &rows,
    )?;
    println!("{summary}");
    eprintln!("reports in {}", args.out.display());
    Ok(())
}

/// The lengths of the two phases of one strategy's run.
#[derive(Clone, Copy)]
struct Phases {
    duration: Duration,
    drop_users: usize,
    drop_stock: u64,
}

/// One strategy, once: a fresh database, its server (on `server_cores`, or
/// anywhere if empty), `hot` then `drop`, each checked against what was stored.
async fn run_strategy(
    args: &Args,
    admin: &sqlx::MySqlPool,
    server_cores: &[usize],
    round: u32,
    Phases {
        duration,
        drop_users,
        drop_stock,
    }: Phases,
    strategy: &str,
) -> anyhow::Result<Vec<ResultRow>> {
    let mut rows = Vec::new();
    let namespace = format!("flash-sale-{}-{round}-{strategy}", std::process::id());
    let database = format!("fs_flash_sale_{}", strategy.replace('-', "_"));
    let sqlite_dir = tempfile::tempdir()?;
    let (database_url, storage) = if strategy == "flashstock-sqlite" {
        let url = format!(
            "sqlite://{}",
            sqlite_dir.path().join("flashstock.db").display()
        );
        (url, None)
    } else if strategy == "noop" {
        (String::new(), Some(Storage::None))
    } else {
        for sql in [
            format!("DROP DATABASE IF EXISTS {database}"),
            format!("CREATE DATABASE {database}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await?;
        }
        (format!("{}/{database}", args.mysql), None)
    };
    settle(admin).await?;
    let baseline = Baseline::parse(strategy);
    let (hot_product, drop_product) = (1u64, 2u64);
    if baseline.is_some_and(|b| b != Baseline::Noop) {
        let pool = sqlx::MySqlPool::connect(&database_url).await?;
        for sql in servers::schema() {
            sqlx::query(sql).execute(&pool).await?;
        }
        sqlx::query("INSERT INTO products (id, stock, price) VALUES (?, ?, ?), (?, ?, ?)")
            .bind(hot_product as i64)
            .bind(HOT_STOCK as i64)
            .bind(servers::PRICE as i64)
            .bind(drop_product as i64)
            .bind(drop_stock as i64)
            .bind(servers::PRICE as i64)
            .execute(&pool)
            .await?;
        if baseline == Some(Baseline::RedisLua) {
            let mut redis = redis::Client::open(args.redis.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            for (product, stock) in [(hot_product, HOT_STOCK), (drop_product, drop_stock)] {
                let _: () = redis::cmd("SET")
                    .arg(servers::redis_stock_key(&namespace, product))
                    .arg(stock)
                    .query_async(&mut redis)
                    .await?;
            }
        }
    }
    let server = spawn_server(
        strategy,
        &database_url,
        &args.redis,
        &namespace,
        server_cores,
    )?;
    let endpoint = Endpoint::parse(&server.url)?;
    let storage = match storage {
        Some(storage) => storage,
        None if strategy == "flashstock-sqlite" => {
            Storage::Sqlite(sqlx::SqlitePool::connect(&database_url).await?)
        }
        None => Storage::MySql(sqlx::MySqlPool::connect(&database_url).await?),
    };
    let driver = Driver {
        endpoint: endpoint.clone(),
        auth: Auth::new(JWT_SECRET),
        run_id: namespace.clone(),
        show_progress: false,
        scheduling: Scheduling::default(),
    };
    let (hot_product, drop_product) = if baseline.is_none() {
        (
            driver.create_product(HOT_STOCK).await?,
            driver.create_product(drop_stock).await?,
        )
    } else {
        (hot_product, drop_product)
    };
    let auth = Auth::new(JWT_SECRET);
    let tokens: Vec<String> = (0..HOT_USERS.max(drop_users))
        .map(|n| {
            auth.token(
                &format!("{namespace}-{n}"),
                false,
                Duration::from_secs(3_600),
            )
        })
        .collect();
    let requests = |product: u64, users: usize| -> Arc<Vec<Bytes>> {
        let body = format!("{{\"product_id\":{product},\"quantity\":1}}");
        Arc::new(
            tokens[..users]
                .iter()
                .map(|t| endpoint.request("POST", "/v1/orders", Some(t), Some(&body)))
                .collect(),
        )
    };

    let hot_budget = Budget::Until(requests(hot_product, HOT_USERS), Instant::now() + duration);
    let processes = cpu::Processes::find(server.child.id());
    let before = processes.sample();
    let hot = drive(args, &endpoint, hot_budget, args.connections).await?;
    let hot_cpu = cpu::between(
        &before,
        &processes.sample(),
        hot.with_status(201),
        cpu::ticks_per_second(),
    );
    let drop_budget = Budget::Each(requests(drop_product, drop_users));
    let dropped = drive(
        args,
        &endpoint,
        drop_budget,
        args.connections.min(drop_users),
    )
    .await?;

    for (scenario, stats, product, stock) in [
        ("hot", &hot, hot_product, HOT_STOCK),
        ("drop", &dropped, drop_product, drop_stock),
    ] {
        // noop stores nothing: there is nothing to check it against.
        let checked = if strategy == "noop" {
            None
        } else {
            Some(check(&storage, stats, product, stock).await?)
        };
        let mut row = ResultRow::new(strategy, scenario, stats, checked);
        if scenario == "hot" {
            row.cpu = hot_cpu;
        }
        eprintln!(
            "   {scenario:<5} {:>9.0} orders/s  p99 {:>8.2} ms  errors {}{}  oversold {:?}  lost {:?}",
            row.orders_per_s,
            row.p99_ms,
            row.errors,
            failures(stats),
            row.oversold,
            row.lost
        );
        if let Some(c) = &row.cpu {
            eprintln!(
                "         CPU an order: loader {:.1} us, server {:.1}, MariaDB {}, Redis {}; \
                 idle {:.1}%",
                c.loader_us,
                c.server_us,
                report::micros(c.mariadb_us),
                report::micros(c.redis_us),
                c.idle_pct
            );
        }
        rows.push(row);
    }
    drop(server);
    // What a strategy wrote must not be flushed during the next one's run.
    if let Storage::MySql(pool) = storage {
        pool.close().await;
        let sql = format!("DROP DATABASE IF EXISTS {database}");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await?;
    }
    Ok(rows)
}

/// How long MariaDB's dirty pages must stop falling for it to count as settled:
/// below a low-water mark its page cleaner leaves the rest for later (here
/// ~10% of the pool), so "none dirty" never comes.
const SETTLED_FOR: Duration = Duration::from_secs(1);
/// The longest wait for MariaDB to settle before a run starts regardless.
const SETTLE_WAIT_MAX: Duration = Duration::from_secs(60);

/// Waits until MariaDB has written back what earlier runs left in its buffer
/// pool (its dirty pages no longer falling): a run of 10 s writes more than the
/// default pool (128 MB) holds, and its pages were being flushed, a core's worth
/// of work at times, during the next strategy's run.
async fn settle(admin: &sqlx::MySqlPool) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut lowest, mut since) = (i64::MAX, Instant::now());
    loop {
        let dirty: i64 = sqlx::query_scalar(
            "SELECT CAST(variable_value AS SIGNED) FROM information_schema.global_status \
             WHERE variable_name = 'INNODB_BUFFER_POOL_PAGES_DIRTY'",
        )
        .fetch_optional(admin)
        .await?
        .unwrap_or(0);
        if dirty < lowest {
            (lowest, since) = (dirty, Instant::now());
        }
        if dirty == 0 || since.elapsed() >= SETTLED_FOR {
            return Ok(());
        }
        if started.elapsed() >= SETTLE_WAIT_MAX {
            eprintln!("   MariaDB still flushing ({dirty} pages dirty); starting anyway");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the errors were, for the console: ` (503 unavailable: 12,
/// transport_error: 3)`, or nothing when there were none.
fn failures(stats: &Stats) -> String {
    let errors = stats.named_errors();
    if errors.is_empty() {
        return String::new();
    }
    let kinds: Vec<String> = errors
        .iter()
        .map(|(name, n)| format!("{name}: {n}"))
        .collect();
    format!(" ({})", kinds.join(", "))
}

/// Oversold units and acknowledged orders missing from the database. Writes
/// behind the reply (redis-lua, flashstock-memory) get a moment to land first.
async fn check(
    storage: &Storage,
    stats: &Stats,
    product: u64,
    stock: u64,
) -> anyhow::Result<(u64, u64)> {
    let acked: HashSet<&str> = stats.ids.iter().map(|id| id.as_ref()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let stored = storage.order_ids(product).await?;
        let missing = acked.iter().filter(|id| !stored.contains(**id)).count();
        if missing == 0 || Instant::now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lost = acked.iter().filter(|id| !stored.contains(**id)).count() as u64;
    let sold = (acked.len() as u64).max(stored.len() as u64);
    Ok((sold.saturating_sub(stock), lost))
}
