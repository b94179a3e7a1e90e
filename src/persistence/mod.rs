//! Everything that touches the database: the `Store` trait and its two sqlx
//! implementations (SQLite, the embedded default, and MySQL/MariaDB), migrations,
//! the loading of item state for activation, and the write-behind writers that
//! commit actors' decisions in batches. No business rule is decided here.

mod sql;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    CampaignId, CampaignInfo, CampaignStock, Coupon, IdempotencyKey, ItemKey, Order, OrderId,
    OrderStatus, ProductId, ProductInfo, ProductStock, Refusal, UnixMillis, UserId,
};

pub use sql::{connect, insert_orders};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("unsupported database url {0:?}: use sqlite://... or mysql://...")]
    UnsupportedUrl(String),
    /// The database did not answer within the query timeout.
    #[error("the database did not answer within {0:?}")]
    TimedOut(std::time::Duration),
}

/// How long the database may take to answer.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A write-behind commit (MariaDB): past it, its outcome is unknown.
    pub commit: std::time::Duration,
    /// Any other query, the wait for a pooled connection included.
    pub query: std::time::Duration,
}

impl Default for Timeouts {
    /// The settings' defaults (`--commit-timeout`, `--query-timeout`).
    fn default() -> Self {
        Timeouts {
            commit: std::time::Duration::from_secs(30),
            query: std::time::Duration::from_secs(30),
        }
    }
}

/// MariaDB/MySQL error numbers that mean "not now" rather than "wrong": too many
/// connections (1040, and per user 1203, 1226), shutting down (1053), the
/// session killed (1927).
const MYSQL_UNAVAILABLE: [u16; 5] = [1040, 1053, 1203, 1226, 1927];

impl StoreError {
    /// Whether the database could not be reached (down, restarting, the network
    /// to it cut, out of connections, no connection free in time, no answer in
    /// time): a request may succeed later, so it is refused with 503, not failed
    /// with 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::TimedOut(_) => true,
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Database(sqlx::Error::Database(error)) => error
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|error| MYSQL_UNAVAILABLE.contains(&error.number())),
            _ => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The shard's epoch moved: another owner has taken it. Nothing was written.
    #[error("shard {shard} is fenced: epoch {epoch} is no longer current")]
    Fenced { shard: u32, epoch: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database did not answer the commit in time; its outcome is unknown.
    #[error("the commit did not answer within {0:?}")]
    TimedOut(std::time::Duration),
    /// The node is shutting down and no longer commits.
    #[error("the committer has stopped")]
    Stopped,
}

impl From<sqlx::Error> for CommitError {
    fn from(e: sqlx::Error) -> Self {
        CommitError::Store(StoreError::Database(e))
    }
}

/// One decided change, as the write-behind writer stores it.
#[derive(Clone, Debug)]
pub enum Mutation {
    OrderPlaced(Order),
    OrderUpdated {
        id: OrderId,
        status: OrderStatus,
        updated_at: UnixMillis,
    },
    /// Absolute counts after the change, views counted since the last flush, and
    /// when the product's next automatic order transition falls due.
    ProductCounts {
        id: ProductId,
        stock: ProductStock,
        views_delta: u64,
        next_due_at: Option<UnixMillis>,
    },
    /// The product's new description (name, price, limit, sale window).
    ProductInfoChanged(ProductInfo),
    CouponIssued(Coupon),
    CampaignCounts {
        id: CampaignId,
        issued: u64,
    },
    KeyRecorded(KeyRecord),
}

/// An idempotency key and what its first request got.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    pub item: ItemKey,
    pub user: UserId,
    pub key: IdempotencyKey,
    pub fingerprint: u64,
    pub outcome: Result<String, Refusal>,
    pub recorded_at: UnixMillis,
}

#[derive(Clone, Debug)]
pub struct NewProduct {
    pub name: String,
    pub price: u64,
    pub stock: u64,
    pub per_user_limit: Option<u64>,
    pub sale_starts_at: Option<UnixMillis>,
    pub sale_ends_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
}

#[derive(Clone, Debug)]
pub struct NewCampaign {
    pub name: String,
    pub quantity: u64,
    pub per_user_limit: u64,
    pub discount: crate::domain::Discount,
    pub starts_at: Option<UnixMillis>,
    pub ends_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
}

/// What a product's actor is activated from.
#[derive(Debug)]
pub struct ProductLoad {
    pub info: ProductInfo,
    pub stock: ProductStock,
    pub live_orders: Vec<Order>,
    pub keys: Vec<LoadedKey<Order>>,
}

/// What a campaign's actor is activated from.
#[derive(Debug)]
pub struct CampaignLoad {
    pub info: CampaignInfo,
    pub stock: CampaignStock,
    pub user_issued: HashMap<UserId, u64>,
    pub keys: Vec<LoadedKey<Coupon>>,
}

#[derive(Debug)]
pub struct LoadedKey<T> {
    pub user: UserId,
    pub key: IdempotencyKey,
    pub fingerprint: u64,
    pub outcome: Result<T, Refusal>,
    pub recorded_at: UnixMillis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    MySql,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The database behind the engine. Both implementations have the same semantics
/// and pass the same tests.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Runs the migrations that have not run yet.
    async fn migrate(&self) -> Result<()>;

    async fn ping(&self) -> Result<()>;

    /// The shard count stored in the database; `if_new` is stored (with a row per
    /// shard in `shard_epochs`) when there is none yet.
    async fn shard_count(&self, if_new: u32) -> Result<u32>;

    /// Bumps the epoch of each shard, naming `node` the owner, in one committed
    /// transaction; returns the new epochs in the order given.
    async fn acquire_shards(&self, shards: &[u32], node: &str) -> Result<Vec<u64>>;

    async fn insert_product(&self, new: &NewProduct) -> Result<(ProductInfo, ProductStock)>;
    async fn product(&self, id: ProductId) -> Result<Option<(ProductInfo, ProductStock)>>;
    /// Products with id greater than `after`, ascending.
    async fn products(
        &self,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<Vec<(ProductInfo, ProductStock)>>;
    /// The product, its live orders and its keys recorded at or after `keys_since`.
    async fn load_product(
        &self,
        id: ProductId,
        keys_since: UnixMillis,
    ) -> Result<Option<ProductLoad>>;

    /// Products with an order due an automatic transition (expiry, shipping,
    /// delivery) by `until`, at most `limit`.
    async fn products_due(&self, until: UnixMillis, limit: u32) -> Result<Vec<ProductId>>;

    async fn order(&self, id: OrderId) -> Result<Option<Order>>;
    /// The user's orders with id less than `before`, newest first.
    async fn user_orders(
        &self,
        user: &UserId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>>;

    async fn insert_campaign(&self, new: &NewCampaign) -> Result<(CampaignInfo, CampaignStock)>;
    async fn campaign(&self, id: CampaignId) -> Result<Option<(CampaignInfo, CampaignStock)>>;
    async fn load_campaign(
        &self,
        id: CampaignId,
        keys_since: UnixMillis,
    ) -> Result<Option<CampaignLoad>>;
    /// The user's coupons with id less than `before`, newest first.
    async fn user_coupons(
        &self,
        user: &UserId,
        before: Option<crate::domain::CouponId>,
        limit: u32,
    ) -> Result<Vec<Coupon>>;

    /// Commits the batches of one or more shards in one transaction, after
    /// checking (and locking) each shard's epoch row. Fenced if any shard's epoch
    /// is no longer the batch's; then nothing is written.
    async fn commit_batches(&self, batches: &[ShardBatch<'_>]) -> Result<(), CommitError>;
}

/// One shard's batch, fenced by the epoch its writer holds.
#[derive(Clone, Copy, Debug)]
pub struct ShardBatch<'a> {
    pub shard: u32,
    pub epoch: u64,
    pub mutations: &'a [Mutation],
}

pub type SharedStore = Arc<dyn Store>;
