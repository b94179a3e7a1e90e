//! Settings: every one is a command-line flag and a `FLASHSTOCK_<NAME>` variable
//! (API.md, Configuration). Durations accept `500ms`, `30s`, `10m`, `24h`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::actors::AckMode;

/// The secret used when none is configured: fine on a laptop, never in production.
pub const DEVELOPMENT_JWT_SECRET: &str = "flashstock-development-secret-change-me";

#[derive(Debug, Parser)]
#[command(
    name = "flashstock",
    version,
    about = "An inventory engine for flash sales"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Print a signed token for development and load tests.
    Token(TokenArgs),
    /// Drive a running flashstock with a flash-sale load and check the outcome.
    Loadtest(crate::loadtest::LoadtestArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim).
    #[arg(long)]
    pub sub: String,
    /// Mark the token as an administrator's.
    #[arg(long)]
    pub admin: bool,
    /// How long the token is valid.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// HTTP address to listen on.
    #[arg(
        long,
        env = "FLASHSTOCK_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// `sqlite://PATH` (created if missing) or `mysql://USER:PASS@HOST:PORT/DB`.
    #[arg(
        long,
        env = "FLASHSTOCK_DATABASE_URL",
        default_value = "sqlite://flashstock.db",
        global = true
    )]
    pub database_url: String,

    /// Unset: one node owning every shard. Set: cluster mode.
    #[arg(long, env = "FLASHSTOCK_REDIS_URL", global = true)]
    pub redis_url: Option<String>,

    /// HS256 secret for tokens.
    #[arg(
        long,
        env = "FLASHSTOCK_JWT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub jwt_secret: Option<String>,

    /// `durable`: answer after the change is committed; `memory`: answer at the
    /// decision (faster; a crash loses the last uncommitted batches).
    #[arg(
        long,
        env = "FLASHSTOCK_ACK",
        value_enum,
        default_value = "durable",
        global = true
    )]
    pub ack: AckMode,

    /// Lifetime of an unpaid order's reservation.
    #[arg(long, env = "FLASHSTOCK_RESERVATION_TTL", default_value = DEFAULT_RESERVATION_TTL, value_parser = parse_duration, global = true)]
    pub reservation_ttl: Duration,

    /// Time from payment to automatic shipping.
    #[arg(long, env = "FLASHSTOCK_SHIPPING_DELAY", default_value = "24h", value_parser = parse_duration, global = true)]
    pub shipping_delay: Duration,

    /// Time from shipping to automatic delivery.
    #[arg(long, env = "FLASHSTOCK_DELIVERY_DELAY", default_value = "24h", value_parser = parse_duration, global = true)]
    pub delivery_delay: Duration,

    /// Probability that the simulated payment gateway accepts a payment.
    #[arg(long, env = "FLASHSTOCK_PAYMENT_SUCCESS_RATE", default_value_t = 1.0, value_parser = parse_rate, global = true)]
    pub payment_success_rate: f64,

    /// Largest quantity in one order.
    #[arg(long, env = "FLASHSTOCK_MAX_QUANTITY_PER_ORDER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_quantity_per_order: u32,

    /// This node's id in a cluster (default: the host name).
    #[arg(long, env = "FLASHSTOCK_NODE_ID", global = true)]
    pub node_id: Option<String>,

    /// The URL other nodes reach this one at (default: http://<listen>).
    #[arg(long, env = "FLASHSTOCK_ADVERTISE_URL", global = true)]
    pub advertise_url: Option<String>,

    /// Namespace of the cluster's Redis keys.
    #[arg(
        long,
        env = "FLASHSTOCK_CLUSTER",
        default_value = "flashstock",
        global = true
    )]
    pub cluster: String,

    /// Shard count, used only when the database is first created.
    #[arg(long, env = "FLASHSTOCK_SHARDS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=4096), global = true)]
    pub shards: u32,

    /// Arbiter threads, each serving HTTP connections and running the actors and
    /// writers of its shards; 0 means one per two cores (at least one), leaving
    /// the other cores to the database and the kernel's network work.
    #[arg(long, env = "FLASHSTOCK_ARBITERS", default_value_t = 0, global = true)]
    pub arbiters: usize,

    /// How long a write-behind commit may take: past it, its outcome is taken as
    /// unknown (its connection is closed, its shard takes a new epoch and
    /// reloads) and the durable replies waiting for it get 503.
    #[arg(long, env = "FLASHSTOCK_COMMIT_TIMEOUT", default_value = "30s", value_parser = parse_timeout, global = true)]
    pub commit_timeout: Duration,

    /// How long any other database call (a read, an item's activation, a
    /// product's creation, a shard's fencing, the readiness check) may take,
    /// the wait for a free connection included: past it, it fails with 503 and
    /// its connection is closed.
    #[arg(long, env = "FLASHSTOCK_QUERY_TIMEOUT", default_value = "30s", value_parser = parse_timeout, global = true)]
    pub query_timeout: Duration,

    /// Database connections at most; on MariaDB a quarter of them (at least one,
    /// unless there is only one) are kept for write-behind commits.
    #[arg(long, env = "FLASHSTOCK_DB_CONNECTIONS_MAX", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024), global = true)]
    pub db_connections_max: u32,

    /// Mutations per write-behind transaction at most.
    #[arg(long, env = "FLASHSTOCK_BATCH_ROWS_MAX", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=100_000), global = true)]
    pub batch_rows_max: u32,

    /// Mutations queued per shard before new work is refused with 503.
    #[arg(long, env = "FLASHSTOCK_QUEUE_ROWS_MAX", default_value_t = 65_536, value_parser = clap::value_parser!(u32).range(1..=10_000_000), global = true)]
    pub queue_rows_max: u32,

    /// An idle actor with nothing pending stops after this long.
    #[arg(long, env = "FLASHSTOCK_PASSIVATE_AFTER", default_value = "5m", value_parser = parse_duration, global = true)]
    pub passivate_after: Duration,

    /// Messages an actor's mailbox holds before senders wait.
    #[arg(
        long,
        env = "FLASHSTOCK_MAILBOX_CAPACITY",
        default_value_t = 4096,
        global = true
    )]
    pub mailbox_capacity: usize,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "FLASHSTOCK_LOG_JSON", global = true)]
    pub log_json: bool,
}

impl Settings {
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            gethostname::gethostname()
                .into_string()
                .unwrap_or_else(|_| "flashstock".into())
        })
    }

    pub fn jwt_secret(&self) -> &str {
        self.jwt_secret.as_deref().unwrap_or(DEVELOPMENT_JWT_SECRET)
    }

    pub fn arbiter_count(&self) -> usize {
        if self.arbiters > 0 {
            self.arbiters
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2))
        }
    }
}

/// `--reservation-ttl` when not given: how long an unpaid order holds its units.
pub const DEFAULT_RESERVATION_TTL: &str = "10m";

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (use e.g. 500ms, 30s, 10m, 24h)"))
}

/// A duration to wait for something: 100ms to 1h.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if (Duration::from_millis(100)..=Duration::from_secs(3_600)).contains(&timeout) {
        Ok(timeout)
    } else {
        Err("must be between 100ms and 1h".into())
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err("must be between 0 and 1".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_api_units_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn no_subcommand_means_serve_with_defaults() {
        let cli = Cli::try_parse_from(["flashstock"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cli.settings.ack, AckMode::Durable);
        assert!(Cli::try_parse_from(["flashstock", "--payment-success-rate", "2"]).is_err());
        assert_eq!(cli.settings.commit_timeout, Duration::from_secs(30));
        assert_eq!(cli.settings.query_timeout, Duration::from_secs(30));
    }

    #[test]
    fn timeouts_are_bounded() {
        for (flag, field) in [
            (
                "--commit-timeout",
                (|s: &Settings| s.commit_timeout) as fn(&Settings) -> Duration,
            ),
            ("--query-timeout", |s: &Settings| s.query_timeout),
        ] {
            let timeout = |value| {
                Cli::try_parse_from(["flashstock", flag, value]).map(|cli| field(&cli.settings))
            };
            assert_eq!(timeout("2s").unwrap(), Duration::from_secs(2), "{flag}");
            for bad in ["0s", "50ms", "2h", "soon"] {
                assert!(timeout(bad).is_err(), "{flag} {bad}");
            }
        }
    }
}
