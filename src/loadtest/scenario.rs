//! The scenarios of `flashstock loadtest`. Each sets up its items over the API
//! (with an admin token minted from the configured secret), builds every request
//! before the clock starts, drives the server, and checks what it did.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::client::{self, Budget, Endpoint, Policy, Progress, Scheduling, Stats};
use super::report::{Report, Verdict};
use crate::config::parse_duration;
use crate::http::Auth;

/// Bounds that keep a run's setup and memory reasonable.
const USERS_MAX: usize = 1_000_000;
const CONNECTIONS_MAX: usize = 10_000;
const PRODUCTS_MAX: usize = 10_000;
const DURATION_MAX: Duration = Duration::from_secs(3_600);
/// Distinct buyers cycled through by the open-ended scenarios.
const CYCLED_USERS: usize = 10_000;
/// Stock that a `hot` or `spread` run cannot exhaust.
const ENDLESS_STOCK: u64 = 1_000_000_000;
/// The price of the products the load tool creates.
pub const PRODUCT_PRICE: u64 = 1_000;

#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// Base URL of the flashstock server.
    #[arg(long, default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// Keep-alive connections driving the load.
    #[arg(long, default_value_t = 256, global = true)]
    pub connections: usize,
    /// Also write the report as JSON to this file (replaced only by a run that
    /// has a report: a failed run leaves it as it was).
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// How the kernel schedules the loader's threads: `batch` takes the same
    /// share of the cores but does not preempt a running thread when a reply
    /// wakes it, so a server on the same machine is not interrupted at every
    /// reply it sends; `normal` is the kernel's usual policy (Linux only).
    #[arg(long, value_enum, default_value_t = Policy::Batch, global = true)]
    pub scheduling: Policy,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// A limited drop: `users` distinct users order 1 unit each, at once, of a
    /// product with `stock` units; exactly min(users, stock) must succeed.
    Drop {
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        stock: u64,
    },
    /// One product that never runs out, ordered as fast as the server answers.
    Hot {
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// `users` users claim one coupon each of a campaign of `quantity`.
    Coupons {
        #[arg(long, default_value_t = 5_000)]
        users: usize,
        #[arg(long, default_value_t = 1_000)]
        quantity: u64,
    },
    /// GET one path as fast as the server answers (e.g. `/healthz`): the
    /// loader's own ceiling, to compare with other load tools.
    Get {
        #[arg(long, default_value = "/healthz")]
        path: String,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
    },
    /// Orders spread over `products` products for `duration`.
    Spread {
        #[arg(long, default_value_t = 100)]
        products: usize,
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
    },
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Drop { .. } => "drop",
            Scenario::Hot { .. } => "hot",
            Scenario::Coupons { .. } => "coupons",
            Scenario::Spread { .. } => "spread",
            Scenario::Get { .. } => "get",
        }
    }

    fn check(&self, connections: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=CONNECTIONS_MAX).contains(&connections),
            "--connections must be 1..={CONNECTIONS_MAX}"
        );
        match self {
            Scenario::Drop { users, .. } | Scenario::Coupons { users, .. } => {
                anyhow::ensure!(
                    (1..=USERS_MAX).contains(users),
                    "--users must be 1..={USERS_MAX}"
                );
            }
            Scenario::Hot { duration } => check_duration(*duration)?,
            Scenario::Get { path, duration } => {
                anyhow::ensure!(
                    path.starts_with('/') && !path.contains(char::is_whitespace),
                    "--path must be an absolute path without spaces"
                );
                check_duration(*duration)?;
            }
            Scenario::Spread { products, duration } => {
                anyhow::ensure!(
                    (1..=PRODUCTS_MAX).contains(products),
                    "--products must be 1..={PRODUCTS_MAX}"
                );
                check_duration(*duration)?;
            }
        }
        Ok(())
    }
}

fn check_duration(duration: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(
        !duration.is_zero() && duration <= DURATION_MAX,
        "--duration must be more than 0 and at most 1h"
    );
    Ok(())
}

/// Runs a scenario against `url`, minting tokens with `jwt_secret`.
pub async fn run(args: &LoadtestArgs, jwt_secret: &str) -> anyhow::Result<Report> {
    args.scenario.check(args.connections)?;
    let endpoint = Endpoint::parse(&args.url)?;
    let driver = Driver {
        endpoint,
        auth: Auth::new(jwt_secret),
        run_id: ulid::Ulid::new().to_string().to_lowercase(),
        show_progress: true,
        scheduling: Scheduling {
            policy: args.scheduling,
            nice: 0,
        },
    };
    driver
        .scenario(&args.scenario, args.connections, &args.url)
        .await
}

/// Drives one server: setup over the API, then the load.
pub struct Driver {
    pub endpoint: Endpoint,
    pub auth: Auth,
    /// Makes user ids unique to the run, so runs never share per-user limits.
    pub run_id: String,
    pub show_progress: bool,
    /// What the loader's threads take as they start.
    pub scheduling: Scheduling,
}

impl Driver {
    pub async fn scenario(
        &self,
        scenario: &Scenario,
        connections: usize,
        url: &str,
    ) -> anyhow::Result<Report> {
        let name = scenario.name();
        // A server that is not there is one clear error, not a run of
        // thousands of failed connections.
        tokio::net::TcpStream::connect(self.endpoint.addr)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let (stats, verdict) = match scenario.clone() {
            Scenario::Drop { users, stock } => self.drop(users, stock, connections).await?,
            Scenario::Hot { duration } => self.spread(1, duration, connections).await?,
            Scenario::Coupons { users, quantity } => {
                self.coupons(users, quantity, connections).await?
            }
            Scenario::Spread { products, duration } => {
                self.spread(products, duration, connections).await?
            }
            Scenario::Get { path, duration } => self.get(&path, duration, connections).await?,
        };
        Ok(Report::new(name, url, connections, &stats, verdict))
    }

    fn admin(&self) -> String {
        self.auth
            .token("loadtest-admin", true, Duration::from_secs(3_600))
    }

    fn users(&self, count: usize) -> Vec<String> {
        (0..count)
            .map(|n| {
                let sub = format!("loadtest-{}-{n}", self.run_id);
                self.auth.token(&sub, false, Duration::from_secs(3_600))
            })
            .collect()
    }

    /// One request on a connection of its own, for setup and checks.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let admin = self.admin();
        let body = body.map(|b| b.to_string());
        let request = self
            .endpoint
            .request(method, path, Some(&admin), body.as_deref());
        let (status, reply) = fetch_json(&self.endpoint, &request)
            .await
            .with_context(|| format!("{method} {path}"))?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "{method} {path}: {status} {reply}"
        );
        Ok(reply)
    }

    /// Creates a product priced `PRODUCT_PRICE` with `stock` units.
    pub async fn create_product(&self, stock: u64) -> anyhow::Result<u64> {
        let product = self
            .call(
                "POST",
                "/v1/products",
                Some(json!({"name": "loadtest", "price": PRODUCT_PRICE, "stock": stock})),
            )
            .await?;
        product["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no product id in {product}"))
    }

    async fn drive(
        &self,
        budget: Budget,
        connections: usize,
        total: Option<u64>,
    ) -> anyhow::Result<Stats> {
        let progress = Progress::default();
        let bar = self.show_progress.then(|| progress_bar(&budget, total));
        let ticker = bar.clone().map(|bar| {
            let progress = progress.clone();
            let started = Instant::now();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let done = progress.done();
                    match total {
                        Some(_) => bar.set_position(done),
                        None => bar.set_position(started.elapsed().as_millis() as u64),
                    }
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
                    bar.set_message(format!("{done} requests, {rate:.0}/s"));
                }
            })
        });
        let stats = client::run(
            &self.endpoint,
            budget,
            connections,
            false,
            progress,
            self.scheduling,
        )
        .await;
        if let Some(ticker) = ticker {
            ticker.abort();
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        stats
    }

    /// Every user sends `path` (with `body`) once, all at once.
    async fn once_per_user(
        &self,
        path: &str,
        body: Option<&str>,
        users: usize,
        connections: usize,
    ) -> anyhow::Result<Stats> {
        let requests: Vec<Bytes> = self
            .users(users)
            .iter()
            .map(|token| self.endpoint.request("POST", path, Some(token), body))
            .collect();
        let budget = Budget::Each(Arc::new(requests));
        self.drive(budget, connections.min(users), Some(users as u64))
            .await
    }

    async fn drop(
        &self,
        users: usize,
        stock: u64,
        connections: usize,
    ) -> anyhow::Result<(Stats, Verdict)> {
        let product = self.create_product(stock).await?;
        let body = json!({"product_id": product, "quantity": 1}).to_string();
        let stats = self
            .once_per_user("/v1/orders", Some(&body), users, connections)
            .await?;
        let expected = (users as u64).min(stock);
        let accepted = stats.with_status(201);
        let refused = stats
            .replies
            .iter()
            .filter(|r| r.0 == 409 && r.1 == "out_of_stock")
            .map(|r| r.2)
            .sum::<u64>();
        let live = self
            .call("GET", &format!("/v1/products/{product}"), None)
            .await?;
        let reserved = live["stock_reserved"].as_u64().unwrap_or(u64::MAX);
        let available = live["stock_available"].as_u64().unwrap_or(u64::MAX);
        let passed = accepted == expected
            && refused == users as u64 - expected
            && reserved == accepted
            && available == stock - expected.min(stock);
        let detail = format!(
            "{accepted} of {users} orders accepted (expected {expected}), {refused} out_of_stock; \
             product {product}: reserved {reserved}, available {available}"
        );
        Ok((stats, Verdict { passed, detail }))
    }

    async fn coupons(
        &self,
        users: usize,
        quantity: u64,
        connections: usize,
    ) -> anyhow::Result<(Stats, Verdict)> {
        let campaign = self
            .call(
                "POST",
                "/v1/campaigns",
                Some(json!({"name": "loadtest", "quantity": quantity,
                            "discount": {"kind": "percent", "value": 10}})),
            )
            .await?;
        let id = campaign["id"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no campaign id"))?;
        let path = format!("/v1/campaigns/{id}/coupons");
        let stats = self.once_per_user(&path, None, users, connections).await?;
        let expected = (users as u64).min(quantity);
        let issued_replies = stats.with_status(201);
        let live = self
            .call("GET", &format!("/v1/campaigns/{id}"), None)
            .await?;
        let issued = live["issued"].as_u64().unwrap_or(u64::MAX);
        let passed = issued_replies == expected && issued == expected;
        let detail = format!(
            "{issued_replies} of {users} coupons issued (expected {expected}); campaign {id}: issued {issued}"
        );
        Ok((stats, Verdict { passed, detail }))
    }

    async fn get(
        &self,
        path: &str,
        duration: Duration,
        connections: usize,
    ) -> anyhow::Result<(Stats, Verdict)> {
        let request = self.endpoint.request("GET", path, None, None);
        let budget = Budget::Until(Arc::new(vec![request]), Instant::now() + duration);
        let stats = self.drive(budget, connections, None).await?;
        let ok = stats.with_status(200);
        let passed = ok > 0 && ok == stats.requests();
        let detail = format!("{ok} of {} requests answered 200", stats.requests());
        Ok((stats, Verdict { passed, detail }))
    }

    async fn spread(
        &self,
        products: usize,
        duration: Duration,
        connections: usize,
    ) -> anyhow::Result<(Stats, Verdict)> {
        let mut ids = Vec::with_capacity(products);
        for _ in 0..products {
            ids.push(self.create_product(ENDLESS_STOCK).await?);
        }
        let users = self.users(CYCLED_USERS);
        // Consecutive requests go to different products and different users.
        let requests: Vec<Bytes> = (0..CYCLED_USERS.max(products))
            .map(|n| {
                let body = json!({"product_id": ids[n % products], "quantity": 1}).to_string();
                self.endpoint.request(
                    "POST",
                    "/v1/orders",
                    Some(&users[n % CYCLED_USERS]),
                    Some(&body),
                )
            })
            .collect();
        let deadline = Instant::now() + duration;
        let budget = Budget::Until(Arc::new(requests), deadline);
        let stats = self.drive(budget, connections, None).await?;
        let accepted = stats.with_status(201);
        let mut reserved = 0;
        for id in &ids {
            let live = self
                .call("GET", &format!("/v1/products/{id}"), None)
                .await?;
            reserved += live["stock_reserved"].as_u64().unwrap_or(0);
        }
        let passed = reserved == accepted && stats.errors() == 0;
        let detail = format!(
            "{accepted} orders accepted; reserved over {products} product(s): {reserved}; \
             {} errors",
            stats.errors()
        );
        Ok((stats, Verdict { passed, detail }))
    }
}

/// Sends one request on a fresh connection; returns the status and JSON body.
async fn fetch_json(endpoint: &Endpoint, request: &[u8]) -> anyhow::Result<(u16, Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(endpoint.addr).await?;
    // Ask the server to close after replying, so the body ends with the stream.
    let text = String::from_utf8_lossy(request).replacen("\r\n", "\r\nConnection: close\r\n", 1);
    socket.write_all(text.as_bytes()).await?;
    let mut reply = Vec::new();
    socket.take(1 << 20).read_to_end(&mut reply).await?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut headers);
    let body_at = match head.parse(&reply)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => anyhow::bail!("incomplete reply"),
    };
    let status = head.code.unwrap_or(0);
    let body = serde_json::from_slice(&reply[body_at..]).unwrap_or(Value::Null);
    Ok((status, body))
}

fn progress_bar(budget: &Budget, total: Option<u64>) -> ProgressBar {
    let bar = match (budget, total) {
        (_, Some(total)) => ProgressBar::new(total),
        (Budget::Until(_, deadline), None) => ProgressBar::new(
            deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64,
        ),
        (Budget::Each(requests), None) => ProgressBar::new(requests.len() as u64),
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {percent:>3}% {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}
