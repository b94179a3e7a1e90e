//! The test harness: a fresh database per test (a SQLite file, or a new MariaDB
//! database), the real `flashstock` binary started on port 0 against it, an HTTP
//! client, and direct reads of the database for assertions.
//!
//! MariaDB is found at `FLASHSTOCK_TEST_MYSQL_URL` (default
//! `mysql://flashstock:flashstock@127.0.0.1:3306`). Without it a MariaDB test is
//! skipped with a message, unless `FLASHSTOCK_REQUIRE_SERVICES=1`, when it fails.

#![allow(dead_code)]

pub mod proxy;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

pub const JWT_SECRET: &str = "flashstock-test-secret";
/// Shards of every server `Server::start` runs.
pub const SHARDS: u32 = 8;
const DEFAULT_MYSQL_URL: &str = "mysql://flashstock:flashstock@127.0.0.1:3306";

/// Both store backends; every black-box test runs on each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

/// Declares `mod $name { sqlite, mariadb }` test functions running
/// `$body(Backend)` on each backend: awaited on a two-thread runtime, or, after
/// `blocking:`, called plainly (a body that runs its own runtimes).
#[macro_export]
macro_rules! on_both_backends {
    (blocking: $($name:ident => $body:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$body($crate::common::Backend::Sqlite)
            }
            #[test]
            fn mariadb() {
                super::$body($crate::common::Backend::MySql)
            }
        }
    )*};
    ($($name:ident => $body:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mariadb() {
                super::$body($crate::common::Backend::MySql).await
            }
        }
    )*};
}

fn services_required() -> bool {
    std::env::var("FLASHSTOCK_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// A database of its own for one test; dropped (MariaDB) or deleted (SQLite)
/// with it.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    dir: tempfile::TempDir,
    mysql_admin: Option<(String, String)>,
}

impl TestDb {
    /// A fresh database, or None (with a message) if MariaDB is not reachable
    /// and not required.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("flashstock.db").display());
                Some(TestDb {
                    backend,
                    url,
                    dir,
                    mysql_admin: None,
                })
            }
            Backend::MySql => {
                let server = std::env::var("FLASHSTOCK_TEST_MYSQL_URL")
                    .unwrap_or_else(|_| DEFAULT_MYSQL_URL.to_string());
                let server = server.trim_end_matches('/').to_string();
                let pool = match mysql_connect(&server).await {
                    Ok(pool) => pool,
                    Err(error) => {
                        if services_required() {
                            panic!("MariaDB at {server} is required but unreachable: {error}");
                        }
                        eprintln!("SKIPPED: MariaDB at {server} is unreachable: {error}");
                        return None;
                    }
                };
                let name = format!("fs_test_{}", ulid::Ulid::new().to_string().to_lowercase());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&pool)
                    .await
                    .expect("create test database");
                pool.close().await;
                Some(TestDb {
                    backend,
                    url: format!("{server}/{name}"),
                    dir,
                    mysql_admin: Some((server, name)),
                })
            }
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Direct read access for assertions.
    pub async fn probe(&self) -> Probe {
        match self.backend {
            Backend::Sqlite => Probe::Sqlite(
                sqlx::SqlitePool::connect(&self.url)
                    .await
                    .expect("open sqlite"),
            ),
            Backend::MySql => Probe::MySql(
                sqlx::MySqlPool::connect(&self.url)
                    .await
                    .expect("open mysql"),
            ),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((server, name)) = self.mysql_admin.take() {
            // Drop runs outside async: a small runtime of its own does the DROP.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(pool) = mysql_connect(&server).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name}"
                        )))
                        .execute(&pool)
                        .await;
                    }
                });
            })
            .join();
        }
    }
}

/// How long a test waits for MariaDB before deciding it is not there.
const MYSQL_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Connects to the MariaDB server; if the login fails, tries once to create the
/// test account over the local socket (as `.ci/run` does), then retries. An
/// unreachable server is remembered for the rest of the test binary, so that
/// every MariaDB test after the first skips at once.
async fn mysql_connect(server: &str) -> Result<sqlx::MySqlPool, String> {
    static UNREACHABLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(error) = UNREACHABLE.get() {
        return Err(error.clone());
    }
    let url = format!("{server}/");
    let connect = || {
        sqlx::mysql::MySqlPoolOptions::new()
            .acquire_timeout(MYSQL_CONNECT_TIMEOUT)
            .connect(&url)
    };
    let first = match connect().await {
        Ok(pool) => return Ok(pool),
        Err(error) => error.to_string(),
    };
    static ACCOUNT: Once = Once::new();
    ACCOUNT.call_once(|| {
        let _ = Command::new("mariadb")
            .args([
                "-e",
                "CREATE USER IF NOT EXISTS 'flashstock'@'127.0.0.1' IDENTIFIED BY 'flashstock'; \
                 GRANT ALL ON *.* TO 'flashstock'@'127.0.0.1';",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    connect().await.map_err(|_| {
        let _ = UNREACHABLE.set(first.clone());
        first
    })
}

/// Reads the database behind a server.
pub enum Probe {
    Sqlite(sqlx::SqlitePool),
    MySql(sqlx::MySqlPool),
}

/// A product's stored counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCounts {
    pub total: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
    pub written_off: i64,
}

impl StoredCounts {
    pub fn invariant_holds(&self) -> bool {
        self.available + self.reserved + self.sold + self.written_off == self.total
            && [self.available, self.reserved, self.sold, self.written_off]
                .iter()
                .all(|c| *c >= 0)
    }
}

macro_rules! probe_query {
    ($self:ident, $sql:literal, $($bind:expr),* ; |$rows:ident| $map:expr) => {
        match $self {
            Probe::Sqlite(pool) => {
                let $rows = sqlx::query($sql)$(.bind($bind))*.fetch_all(pool).await.expect($sql);
                $map
            }
            Probe::MySql(pool) => {
                let $rows = sqlx::query($sql)$(.bind($bind))*.fetch_all(pool).await.expect($sql);
                $map
            }
        }
    };
}

impl Probe {
    /// The MariaDB pool of a MariaDB test's probe.
    pub fn mysql(&self) -> &sqlx::MySqlPool {
        match self {
            Probe::MySql(pool) => pool,
            Probe::Sqlite(_) => panic!("a MariaDB test"),
        }
    }

    pub async fn product_counts(&self, product: u64) -> StoredCounts {
        probe_query!(self,
        "SELECT total_stock, stock_available, stock_reserved, sold, written_off FROM products WHERE id = ?",
        product as i64;
        |rows| {
            let row = rows.first().expect("product row");
            StoredCounts {
                total: row.get(0),
                available: row.get(1),
                reserved: row.get(2),
                sold: row.get(3),
                written_off: row.get(4),
            }
        })
    }

    /// (order id, user, status, quantity) of every stored order of a product.
    pub async fn orders(&self, product: u64) -> Vec<(String, String, String, i64)> {
        probe_query!(self,
            "SELECT id, user_id, status, quantity FROM orders WHERE product_id = ?",
            product as i64;
            |rows| rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
    }

    /// The campaign's stored `issued` and its stored coupons' user ids.
    pub async fn campaign(&self, campaign: u64) -> (i64, Vec<String>) {
        let issued: i64 = probe_query!(self,
            "SELECT issued FROM campaigns WHERE id = ?", campaign as i64;
            |rows| rows.first().expect("campaign row").get(0));
        let users: Vec<String> = probe_query!(self,
            "SELECT user_id FROM coupons WHERE campaign_id = ?", campaign as i64;
            |rows| rows.iter().map(|r| r.get(0)).collect());
        (issued, users)
    }

    /// How many batches the shard has committed (`shard_epochs.batches`).
    pub async fn shard_batches(&self, shard: u32) -> i64 {
        probe_query!(self,
            "SELECT batches FROM shard_epochs WHERE shard = ?", i64::from(shard);
            |rows| rows.first().expect("shard row").get(0))
    }

    /// Moves every shard's epoch on, as a new owner taking the shards would.
    pub async fn bump_epochs(&self) {
        let sql = "UPDATE shard_epochs SET epoch = epoch + 1, owner = 'usurper'";
        match self {
            Probe::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
            Probe::MySql(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        }
        .expect("bump epochs");
    }

    /// Asserts the product's invariants against the database: the counts add up,
    /// and reserved and sold equal the sums over its orders.
    pub async fn assert_consistent(&self, product: u64) -> StoredCounts {
        let counts = self.product_counts(product).await;
        assert!(counts.invariant_holds(), "invariant broken: {counts:?}");
        let orders = self.orders(product).await;
        let sum = |statuses: &[&str]| -> i64 {
            orders
                .iter()
                .filter(|(_, _, s, _)| statuses.contains(&s.as_str()))
                .map(|(_, _, _, q)| q)
                .sum()
        };
        assert_eq!(
            counts.reserved,
            sum(&["PENDING_PAYMENT"]),
            "reserved vs orders"
        );
        assert_eq!(
            counts.sold,
            sum(&["PAID", "SHIPPED", "DELIVERED", "RETURN_REQUESTED"]),
            "sold vs orders"
        );
        counts
    }
}

/// A running `flashstock serve` process.
pub struct Server {
    child: Child,
    pub url: String,
    pub client: reqwest::Client,
}

impl Server {
    /// Starts the binary against `db` with extra flags.
    pub fn start(db: &TestDb, extra: &[&str]) -> Server {
        Server::start_on(db, &db.url, extra)
    }

    /// Starts the binary against `db` reached at `database_url` (through a
    /// proxy, say) with extra flags.
    pub fn start_on(db: &TestDb, database_url: &str, extra: &[&str]) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(db.dir().join("server.log"))
            .expect("server log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_flashstock"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                database_url,
            ])
            .args(["--jwt-secret", JWT_SECRET, "--shards", &SHARDS.to_string()])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start flashstock");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("flashstock listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let log = std::fs::read_to_string(db.dir().join("server.log")).unwrap_or_default();
                panic!("flashstock did not start; its log:\n{log}");
            }
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Server { child, url, client }
    }

    /// SIGKILL: no shutdown at all.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let bytes = response.bytes().await.expect("body");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    pub async fn create_product(&self, stock: u64, per_user_limit: Option<u64>) -> u64 {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/v1/products",
                Some(&admin_token()),
                Some(
                    json!({"name": "limited drop", "price": 129000, "stock": stock,
                            "per_user_limit": per_user_limit}),
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_u64().expect("product id")
    }

    pub async fn create_campaign(&self, quantity: u64, per_user_limit: u64) -> u64 {
        let (status, body) = self
            .request(
                reqwest::Method::POST,
                "/v1/campaigns",
                Some(&admin_token()),
                Some(json!({"name": "first 1000", "quantity": quantity,
                            "per_user_limit": per_user_limit,
                            "discount": {"kind": "percent", "value": 10}})),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_u64().expect("campaign id")
    }

    pub async fn order(
        &self,
        token: &str,
        product: u64,
        quantity: u64,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        self.request(
            reqwest::Method::POST,
            "/v1/orders",
            Some(token),
            Some(json!({"product_id": product, "quantity": quantity})),
            key,
        )
        .await
    }

    /// `POST /v1/campaigns/{campaign}/coupons` as the token's user.
    pub async fn claim_coupon(
        &self,
        token: &str,
        campaign: u64,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let path = format!("/v1/campaigns/{campaign}/coupons");
        self.request(reqwest::Method::POST, &path, Some(token), None, key)
            .await
    }

    pub async fn product(&self, product: u64) -> Value {
        let (status, body) = self
            .request(
                reqwest::Method::GET,
                &format!("/v1/products/{product}"),
                None,
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Sends every order request at once, at most `in_flight` outstanding;
    /// returns each reply's status and body.
    pub async fn order_storm(
        &self,
        requests: Vec<(String, u64, u64, Option<String>)>,
        in_flight: usize,
    ) -> Vec<(StatusCode, Value)> {
        futures::stream::iter(requests)
            .map(|(token, product, quantity, key)| async move {
                self.order(&token, product, quantity, key.as_deref()).await
            })
            .buffer_unordered(in_flight)
            .collect()
            .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token signed with the test servers' secret, as `flashstock token` makes it.
pub fn token(sub: &str, admin: bool) -> String {
    flashstock::http::Auth::new(JWT_SECRET).token(sub, admin, Duration::from_secs(3_600))
}

pub fn admin_token() -> String {
    token("admin", true)
}

pub fn user_token(n: usize) -> String {
    token(&format!("user-{n}"), false)
}

/// Counts replies by status and problem `code`.
pub fn tally(replies: &[(StatusCode, Value)]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (status, body) in replies {
        let key = match body.get("code").and_then(Value::as_str) {
            Some(code) => format!("{} {code}", status.as_u16()),
            None => status.as_u16().to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}
