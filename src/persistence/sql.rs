//! The two `Store` implementations. Their SQL is the same text for SQLite and
//! MariaDB (both take `?` placeholders and `INSERT ... RETURNING`), so one macro
//! writes both impls over their concrete sqlx types; only connecting and the
//! migrations differ.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::mysql::{
    MySql, MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow,
};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Database, Pool, QueryBuilder, Row};

use super::{
    Backend, CampaignLoad, CommitError, KeyRecord, LoadedKey, Mutation, NewCampaign, NewProduct,
    ProductLoad, Result, ShardBatch, SharedStore, Store, StoreError, Timeouts,
};
use crate::domain::{
    CampaignId, CampaignInfo, CampaignStock, Coupon, CouponId, Discount, IdempotencyKey, Order,
    OrderId, OrderStatus, ProductId, ProductInfo, ProductStock, Refusal, UnixMillis, UserId,
};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("migrations/mysql");

/// Rows per multi-row INSERT: well under both databases' placeholder limits
/// (SQLite 32,766; MySQL 65,535) at 9 columns.
const INSERT_ROWS_MAX: usize = 1_024;

/// Splits `rows` into chunks whose lengths are powers of two (largest first).
/// Each multi-row INSERT length is its own prepared statement; with any batch
/// size possible, statements would be prepared (and evicted from the cache)
/// batch after batch. Powers of two bound them to 11 per table, all cached.
fn ladder<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let size = INSERT_ROWS_MAX.min(1 << rows.len().ilog2());
        let (chunk, rest) = rows.split_at(size);
        rows = rest;
        Some(chunk)
    })
}

/// How long a connection waits for a locked SQLite database before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the database at `url` (`sqlite://...` or `mysql://...`) with at most
/// `connections_max` pooled connections. A MariaDB commit that has not answered
/// after `timeouts.commit` is abandoned (SQLite, in process, is not cut off);
/// any other call that has not after `timeouts.query` fails.
pub async fn connect(url: &str, connections_max: u32, timeouts: Timeouts) -> Result<SharedStore> {
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(connections_max)
            .connect_with(options)
            .await?;
        Ok(Arc::new(SqliteStore {
            pool,
            query_timeout: timeouts.query,
            commit_connections: CommitConnections::for_pool(connections_max),
        }))
    } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
        let url = url.replacen("mariadb:", "mysql:", 1);
        let options = MySqlConnectOptions::from_str(&url)?;
        let pool_of = |size: u32| {
            MySqlPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(10))
        };
        let commits = commit_share(connections_max);
        let pool = pool_of(connections_max - commits.unwrap_or(0))
            .connect_with(options.clone())
            .await?;
        let (commit_pool, commit_connections) = match commits {
            Some(commits) => (
                pool_of(commits).connect_lazy_with(options),
                CommitConnections::new(COMMIT_CONNECTION_IDLE_MAX, commits as usize),
            ),
            None => (pool.clone(), CommitConnections::for_pool(connections_max)),
        };
        Ok(Arc::new(MySqlStore {
            pool,
            commit_pool,
            commit_timeout: timeouts.commit,
            query_timeout: timeouts.query,
            commit_connections,
        }))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// Of a server database's `connections_max`, the commits' own pool: a quarter,
/// at least one (the committer runs four at a time with the default 16),
/// leaving the rest to everything else; None for one connection, which both
/// then share.
fn commit_share(connections_max: u32) -> Option<u32> {
    (connections_max > 1).then(|| (connections_max / 4).max(1))
}

pub struct SqliteStore {
    pool: SqlitePool,
    query_timeout: Duration,
    commit_connections: CommitConnections<Sqlite>,
}

pub struct MySqlStore {
    pool: MySqlPool,
    /// The commits' own connections, opened by the commits themselves (the
    /// pool connects lazily, in the task that asks): a socket is watched by
    /// the runtime it was opened on, and commits run on the arbiters. Taken
    /// from `pool`, opened on the main runtime, a batch's every result packet
    /// woke a tokio worker thread, which then woke the arbiter (`eventfd`):
    /// ~4.7 thread wake-ups per commit, in its reply's path.
    commit_pool: MySqlPool,
    commit_timeout: Duration,
    query_timeout: Duration,
    commit_connections: CommitConnections<MySql>,
}

/// How long a commit connection may sit unused and still be kept; past it, it
/// goes back to the pool, which pings it before its next use.
const COMMIT_CONNECTION_IDLE_MAX: Duration = Duration::from_secs(2);

/// Connections kept from one commit to the next, each with when it last
/// committed. The pool pings a connection when it hands it out and again when
/// it is given back: two round trips to the database per batch, one of them
/// before the batch is sent. Under load a commit follows a commit, and a kept
/// connection pays neither; one unused for longer than
/// `COMMIT_CONNECTION_IDLE_MAX` goes back to the pool, to be checked there
/// before it is used again. A commit that fails drops its connection, which
/// the pool checks as it always does. At most `kept_max` are kept: on SQLite
/// a quarter of the pool, so that reads always have the rest, even while no
/// commit comes to give a kept one back; on MariaDB, whose commits have a pool
/// of their own, all of that pool.
struct CommitConnections<DB: Database> {
    kept: std::sync::Mutex<Vec<(PoolConnection<DB>, Instant)>>,
    idle_max: Duration,
    kept_max: usize,
}

impl<DB: Database> CommitConnections<DB> {
    fn new(idle_max: Duration, kept_max: usize) -> Self {
        CommitConnections {
            kept: std::sync::Mutex::new(Vec::new()),
            idle_max,
            kept_max,
        }
    }

    /// Kept connections for a pool of `connections_max`: a quarter of it (none
    /// for a pool of fewer than four).
    fn for_pool(connections_max: u32) -> Self {
        Self::new(COMMIT_CONNECTION_IDLE_MAX, connections_max as usize / 4)
    }

    /// The most recently kept connection, or else the pool's.
    async fn take(&self, pool: &Pool<DB>) -> Result<PoolConnection<DB>, sqlx::Error> {
        let (kept, stale) = {
            let mut kept = self.kept.lock().expect("not poisoned");
            // Oldest first: the stale ones are a prefix.
            let stale_count = kept.partition_point(|(_, used)| used.elapsed() > self.idle_max);
            let stale: Vec<_> = kept.drain(..stale_count).collect();
            (kept.pop(), stale)
        };
        drop(stale);
        match kept {
            Some((conn, _)) => Ok(conn),
            None => pool.acquire().await,
        }
    }

    /// Keeps the connection of a commit that succeeded for the next commit, or
    /// gives it back to the pool when as many are kept as may be.
    fn keep(&self, conn: PoolConnection<DB>) {
        let mut kept = self.kept.lock().expect("not poisoned");
        if kept.len() < self.kept_max {
            kept.push((conn, Instant::now()));
        } else {
            drop(kept);
            drop(conn);
        }
    }
}

macro_rules! product_columns {
    () => {
        "id, name, price, total_stock, stock_available, stock_reserved, sold, written_off, \
         per_user_limit, sale_starts_at, sale_ends_at, views, created_at"
    };
}

macro_rules! order_columns {
    () => {
        "id, user_id, product_id, quantity, unit_price, status, created_at, updated_at, expires_at"
    };
}

/// `INSERT INTO orders (...) VALUES (...), ...` for `orders`, bound: how an order
/// row is written, on either database.
pub fn insert_orders<'o, DB>(orders: impl IntoIterator<Item = &'o Order>) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'static, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'static, DB> + sqlx::Type<DB>,
    &'static str: sqlx::Encode<'static, DB> + sqlx::Type<DB>,
{
    let mut insert =
        QueryBuilder::<DB>::new(concat!("INSERT INTO orders (", order_columns!(), ") "));
    insert.push_values(orders, |mut row, order| {
        row.push_bind(order.id.to_string())
            .push_bind(order.user_id.as_str().to_string())
            .push_bind(order.product_id.0 as i64)
            .push_bind(order.quantity as i64)
            .push_bind(order.unit_price as i64)
            .push_bind(order.status.as_str())
            .push_bind(order.created_at.0)
            .push_bind(order.updated_at.0)
            .push_bind(order.expires_at.0);
    });
    insert
}

macro_rules! campaign_columns {
    () => {
        "id, name, quantity, issued, per_user_limit, discount_kind, discount_value, \
         starts_at, ends_at, created_at"
    };
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn millis(value: Option<i64>) -> Option<UnixMillis> {
    value.map(UnixMillis)
}

fn user_id(text: &str) -> Result<UserId> {
    UserId::parse(text).map_err(corrupt)
}

fn refusal(code: &str) -> Result<Refusal> {
    Refusal::from_code(code).ok_or_else(|| corrupt(format!("unknown refusal {code:?}")))
}

/// The outcome stored beside a key: a result id or a refusal code.
fn key_outcome<T>(result: Option<T>, refusal_code: Option<String>) -> Result<Result<T, Refusal>> {
    match (result, refusal_code) {
        (Some(made), None) => Ok(Ok(made)),
        (None, Some(code)) => Ok(Err(refusal(&code)?)),
        _ => Err(corrupt("idempotency key with neither result nor refusal")),
    }
}

/// Latest counts per product and campaign in a batch, with views summed.
#[derive(Default)]
struct Counts {
    /// Counts, views to add, next due time.
    products: HashMap<ProductId, (ProductStock, u64, Option<UnixMillis>)>,
    infos: HashMap<ProductId, ProductInfo>,
    campaigns: HashMap<CampaignId, u64>,
}

/// A batch sorted by statement: inserts (with later status changes of the same
/// orders folded in), then updates, then counts.
struct Sorted<'a> {
    orders: Vec<Order>,
    updates: Vec<(OrderId, OrderStatus, UnixMillis)>,
    coupons: Vec<&'a Coupon>,
    keys: Vec<&'a KeyRecord>,
    counts: Counts,
}

fn sort_batch<'a>(mutations: impl Iterator<Item = &'a Mutation>) -> Sorted<'a> {
    let mut sorted = Sorted {
        orders: Vec::new(),
        updates: Vec::new(),
        coupons: Vec::new(),
        keys: Vec::new(),
        counts: Counts::default(),
    };
    let mut placed_at: HashMap<OrderId, usize> = HashMap::new();
    for mutation in mutations {
        match mutation {
            Mutation::OrderPlaced(order) => {
                placed_at.insert(order.id, sorted.orders.len());
                sorted.orders.push(order.clone());
            }
            Mutation::OrderUpdated {
                id,
                status,
                updated_at,
            } => match placed_at.get(id) {
                Some(&i) => {
                    sorted.orders[i].status = *status;
                    sorted.orders[i].updated_at = *updated_at;
                }
                None => sorted.updates.push((*id, *status, *updated_at)),
            },
            Mutation::ProductCounts {
                id,
                stock,
                views_delta,
                next_due_at,
            } => {
                let entry = sorted
                    .counts
                    .products
                    .entry(*id)
                    .or_insert((*stock, 0, None));
                entry.0 = *stock;
                entry.1 += views_delta;
                entry.2 = *next_due_at;
            }
            Mutation::ProductInfoChanged(info) => {
                sorted.counts.infos.insert(info.id, info.clone());
            }
            Mutation::CouponIssued(coupon) => sorted.coupons.push(coupon),
            Mutation::CampaignCounts { id, issued } => {
                sorted.counts.campaigns.insert(*id, *issued);
            }
            Mutation::KeyRecorded(record) => sorted.keys.push(record),
        }
    }
    sorted
}

/// Runs `$body` with `$conn` a connection of the store's pool, within its
/// query timeout (the wait for a connection included). A query the database
/// does not answer in time (the way back from it lost, as in a failover) is
/// given up with `StoreError::TimedOut`, and its connection closed: left
/// mid-protocol, it would otherwise go back to the pool through a ping that
/// waits as long as TCP does.
macro_rules! within_deadline {
    ($store:expr, $conn:ident, $body:block) => {{
        let timeout = $store.query_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        match tokio::time::timeout_at(deadline, $store.pool.acquire()).await {
            Err(_) => Err(StoreError::TimedOut(timeout)),
            Ok(Err(error)) => Err(StoreError::from(error)),
            Ok(Ok(mut pooled)) => {
                let answered = tokio::time::timeout_at(deadline, async {
                    let $conn = &mut *pooled;
                    $body
                })
                .await;
                match answered {
                    Ok(result) => result,
                    Err(_) => {
                        pooled.close_on_drop();
                        Err(StoreError::TimedOut(timeout))
                    }
                }
            }
        }
    }};
}

macro_rules! impl_store {
    ($store:ident, $db:ty, $conn:ty, $row:ty, $backend:expr, $migrations:expr, $commit:ident) => {
        impl $store {
            async fn product_on(
                conn: &mut $conn,
                id: ProductId,
            ) -> Result<Option<(ProductInfo, ProductStock)>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    product_columns!(),
                    " FROM products WHERE id = ?"
                ))
                .bind(id.0 as i64)
                .fetch_optional(conn)
                .await?;
                row.as_ref().map(Self::product_from_row).transpose()
            }

            async fn campaign_on(
                conn: &mut $conn,
                id: CampaignId,
            ) -> Result<Option<(CampaignInfo, CampaignStock)>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    campaign_columns!(),
                    " FROM campaigns WHERE id = ?"
                ))
                .bind(id.0 as i64)
                .fetch_optional(conn)
                .await?;
                row.as_ref().map(Self::campaign_from_row).transpose()
            }

            fn product_from_row(row: &$row) -> Result<(ProductInfo, ProductStock)> {
                let info = ProductInfo {
                    id: ProductId(row.try_get::<i64, _>("id")? as u64),
                    name: row.try_get("name")?,
                    price: row.try_get::<i64, _>("price")? as u64,
                    per_user_limit: row
                        .try_get::<Option<i64>, _>("per_user_limit")?
                        .map(|v| v as u64),
                    sale_starts_at: millis(row.try_get("sale_starts_at")?),
                    sale_ends_at: millis(row.try_get("sale_ends_at")?),
                    views: row.try_get::<i64, _>("views")? as u64,
                    created_at: UnixMillis(row.try_get("created_at")?),
                };
                let stock = ProductStock {
                    total: row.try_get::<i64, _>("total_stock")? as u64,
                    available: row.try_get::<i64, _>("stock_available")? as u64,
                    reserved: row.try_get::<i64, _>("stock_reserved")? as u64,
                    sold: row.try_get::<i64, _>("sold")? as u64,
                    written_off: row.try_get::<i64, _>("written_off")? as u64,
                };
                Ok((info, stock))
            }

            fn order_from_row(row: &$row) -> Result<Order> {
                Self::order_from_columns(row, "")
            }

            /// An order from columns named with `prefix` (for joins).
            fn order_from_columns(row: &$row, prefix: &str) -> Result<Order> {
                let column = |name: &'static str| -> std::borrow::Cow<'static, str> {
                    if prefix.is_empty() {
                        name.into()
                    } else {
                        format!("{prefix}{name}").into()
                    }
                };
                let id: String = row.try_get(column("id").as_ref())?;
                let status: String = row.try_get(column("status").as_ref())?;
                let int = |name: &'static str| row.try_get::<i64, _>(column(name).as_ref());
                Ok(Order {
                    id: id.parse().map_err(corrupt)?,
                    user_id: user_id(row.try_get(column("user_id").as_ref())?)?,
                    product_id: ProductId(int("product_id")? as u64),
                    quantity: int("quantity")? as u64,
                    unit_price: int("unit_price")? as u64,
                    status: OrderStatus::parse(&status)
                        .ok_or_else(|| corrupt(format!("unknown order status {status:?}")))?,
                    created_at: UnixMillis(int("created_at")?),
                    updated_at: UnixMillis(int("updated_at")?),
                    expires_at: UnixMillis(int("expires_at")?),
                })
            }

            fn campaign_from_row(row: &$row) -> Result<(CampaignInfo, CampaignStock)> {
                let kind: String = row.try_get("discount_kind")?;
                let value = row.try_get::<i64, _>("discount_value")? as u64;
                let info = CampaignInfo {
                    id: CampaignId(row.try_get::<i64, _>("id")? as u64),
                    name: row.try_get("name")?,
                    per_user_limit: row.try_get::<i64, _>("per_user_limit")? as u64,
                    discount: Discount::from_parts(&kind, value)
                        .ok_or_else(|| corrupt(format!("bad discount {kind} {value}")))?,
                    starts_at: millis(row.try_get("starts_at")?),
                    ends_at: millis(row.try_get("ends_at")?),
                    created_at: UnixMillis(row.try_get("created_at")?),
                };
                let stock = CampaignStock {
                    quantity: row.try_get::<i64, _>("quantity")? as u64,
                    issued: row.try_get::<i64, _>("issued")? as u64,
                };
                Ok((info, stock))
            }

            fn coupon_from_row(row: &$row) -> Result<Coupon> {
                let id: String = row.try_get("id")?;
                Ok(Coupon {
                    id: id.parse().map_err(corrupt)?,
                    campaign_id: CampaignId(row.try_get::<i64, _>("campaign_id")? as u64),
                    user_id: user_id(row.try_get("user_id")?)?,
                    issued_at: UnixMillis(row.try_get("issued_at")?),
                })
            }

            fn key_parts(row: &$row) -> Result<(UserId, IdempotencyKey, u64, UnixMillis)> {
                let key: String = row.try_get("idem_key")?;
                Ok((
                    user_id(row.try_get("user_id")?)?,
                    IdempotencyKey::parse(&key).map_err(corrupt)?,
                    row.try_get::<i64, _>("fingerprint")? as u64,
                    UnixMillis(row.try_get("created_at")?),
                ))
            }

            #[allow(dead_code)]
            async fn commit_prepared(&self, batches: &[ShardBatch<'_>]) -> Result<(), CommitError> {
                let batch = sort_batch(batches.iter().flat_map(|b| b.mutations));
                let mut conn = self.commit_connections.take(&self.pool).await?;
                let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                // The fences: each takes its shard row's write lock for the whole
                // transaction, and matches only while that epoch is current.
                for ShardBatch { shard, epoch, .. } in batches {
                    let fence = sqlx::query(
                        "UPDATE shard_epochs SET batches = batches + 1 WHERE shard = ? AND epoch = ?",
                    )
                    .bind(i64::from(*shard))
                    .bind(*epoch as i64)
                    .execute(&mut *tx)
                    .await?;
                    if fence.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Err(CommitError::Fenced {
                            shard: *shard,
                            epoch: *epoch,
                        });
                    }
                }
                for chunk in ladder(&batch.orders) {
                    insert_orders::<$db>(chunk).build().execute(&mut *tx).await?;
                }
                for chunk in ladder(&batch.coupons) {
                    let mut insert = QueryBuilder::<$db>::new(
                        "INSERT INTO coupons (id, campaign_id, user_id, issued_at) ",
                    );
                    insert.push_values(chunk, |mut row, coupon| {
                        row.push_bind(coupon.id.to_string())
                            .push_bind(coupon.campaign_id.0 as i64)
                            .push_bind(coupon.user_id.as_str().to_string())
                            .push_bind(coupon.issued_at.0);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                for chunk in ladder(&batch.keys) {
                    let mut insert = QueryBuilder::<$db>::new(
                        "INSERT INTO idempotency_keys (item_kind, item_id, user_id, idem_key, \
                         fingerprint, result_id, refusal, created_at) ",
                    );
                    insert.push_values(chunk, |mut row, record| {
                        let (result_id, refusal) = match &record.outcome {
                            Ok(id) => (Some(id.clone()), None),
                            Err(refusal) => (None, Some(refusal.code())),
                        };
                        row.push_bind(record.item.kind_code())
                            .push_bind(record.item.raw_id() as i64)
                            .push_bind(record.user.as_str().to_string())
                            .push_bind(record.key.as_str().to_string())
                            .push_bind(record.fingerprint as i64)
                            .push_bind(result_id)
                            .push_bind(refusal)
                            .push_bind(record.recorded_at.0);
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                for (id, status, updated_at) in &batch.updates {
                    sqlx::query("UPDATE orders SET status = ?, updated_at = ? WHERE id = ?")
                        .bind(status.as_str())
                        .bind(updated_at.0)
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                for (id, (stock, views_delta, next_due_at)) in &batch.counts.products {
                    stock.check();
                    sqlx::query(
                        "UPDATE products SET total_stock = ?, stock_available = ?, \
                         stock_reserved = ?, sold = ?, written_off = ?, views = views + ?, \
                         next_due_at = ? WHERE id = ?",
                    )
                    .bind(stock.total as i64)
                    .bind(stock.available as i64)
                    .bind(stock.reserved as i64)
                    .bind(stock.sold as i64)
                    .bind(stock.written_off as i64)
                    .bind(*views_delta as i64)
                    .bind(next_due_at.map(|t| t.0))
                    .bind(id.0 as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                for info in batch.counts.infos.values() {
                    sqlx::query(
                        "UPDATE products SET name = ?, price = ?, per_user_limit = ?, \
                         sale_starts_at = ?, sale_ends_at = ? WHERE id = ?",
                    )
                    .bind(info.name.as_str())
                    .bind(info.price as i64)
                    .bind(info.per_user_limit.map(|v| v as i64))
                    .bind(info.sale_starts_at.map(|t| t.0))
                    .bind(info.sale_ends_at.map(|t| t.0))
                    .bind(info.id.0 as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                for (id, issued) in &batch.counts.campaigns {
                    sqlx::query("UPDATE campaigns SET issued = ? WHERE id = ?")
                        .bind(*issued as i64)
                        .bind(id.0 as i64)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                self.commit_connections.keep(conn);
                Ok(())
            }

        }

        #[async_trait]
        impl Store for $store {
            fn backend(&self) -> Backend {
                $backend
            }

            async fn migrate(&self) -> Result<()> {
                $migrations.run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> Result<()> {
                within_deadline!(self, conn, {
                    sqlx::query("SELECT 1").execute(&mut *conn).await?;
                    Ok(())
                })
            }

            async fn shard_count(&self, if_new: u32) -> Result<u32> {
                within_deadline!(self, conn, {
                    assert!(if_new > 0);
                    // Two nodes may start on a fresh database at once: one insert wins,
                    // the other reads what it wrote.
                    for _ in 0..3 {
                        let stored = sqlx::query("SELECT value FROM meta WHERE name = 'shards'")
                            .fetch_optional(&mut *conn)
                            .await?;
                        if let Some(row) = stored {
                            let count: i64 = row.try_get("value")?;
                            return u32::try_from(count)
                                .ok()
                                .filter(|c| *c > 0)
                                .ok_or_else(|| corrupt(format!("shard count {count}")));
                        }
                        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                        let created = sqlx::query("INSERT INTO meta (name, value) VALUES ('shards', ?)")
                            .bind(i64::from(if_new))
                            .execute(&mut *tx)
                            .await;
                        if created.is_err() {
                            continue;
                        }
                        let shards: Vec<u32> = (0..if_new).collect();
                        for chunk in shards.chunks(INSERT_ROWS_MAX) {
                            let mut insert = QueryBuilder::<$db>::new(
                                "INSERT INTO shard_epochs (shard, epoch, batches) ",
                            );
                            insert.push_values(chunk, |mut row, shard| {
                                row.push_bind(i64::from(*shard))
                                    .push_bind(0i64)
                                    .push_bind(0i64);
                            });
                            insert.build().execute(&mut *tx).await?;
                        }
                        tx.commit().await?;
                        return Ok(if_new);
                    }
                    Err(corrupt("the shard count could be neither read nor created"))
                })
            }

            async fn acquire_shards(&self, shards: &[u32], node: &str) -> Result<Vec<u64>> {
                within_deadline!(self, conn, {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let mut epochs = Vec::with_capacity(shards.len());
                    for shard in shards {
                        sqlx::query(
                            "UPDATE shard_epochs SET epoch = epoch + 1, owner = ? WHERE shard = ?",
                        )
                        .bind(node)
                        .bind(i64::from(*shard))
                        .execute(&mut *tx)
                        .await?;
                        let row = sqlx::query("SELECT epoch FROM shard_epochs WHERE shard = ?")
                            .bind(i64::from(*shard))
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or_else(|| corrupt(format!("shard {shard} has no epoch row")))?;
                        epochs.push(row.try_get::<i64, _>("epoch")? as u64);
                    }
                    tx.commit().await?;
                    Ok(epochs)
                })
            }

            async fn insert_product(
                &self,
                new: &NewProduct,
            ) -> Result<(ProductInfo, ProductStock)> {
                within_deadline!(self, conn, {
                    let row = sqlx::query(
                        "INSERT INTO products (name, price, total_stock, stock_available, \
                         stock_reserved, sold, written_off, per_user_limit, sale_starts_at, \
                         sale_ends_at, views, created_at) \
                         VALUES (?, ?, ?, ?, 0, 0, 0, ?, ?, ?, 0, ?) RETURNING id",
                    )
                    .bind(new.name.as_str())
                    .bind(new.price as i64)
                    .bind(new.stock as i64)
                    .bind(new.stock as i64)
                    .bind(new.per_user_limit.map(|v| v as i64))
                    .bind(new.sale_starts_at.map(|t| t.0))
                    .bind(new.sale_ends_at.map(|t| t.0))
                    .bind(new.created_at.0)
                    .fetch_one(&mut *conn)
                    .await?;
                    let info = ProductInfo {
                        id: ProductId(row.try_get::<i64, _>("id")? as u64),
                        name: new.name.clone(),
                        price: new.price,
                        per_user_limit: new.per_user_limit,
                        sale_starts_at: new.sale_starts_at,
                        sale_ends_at: new.sale_ends_at,
                        views: 0,
                        created_at: new.created_at,
                    };
                    Ok((info, ProductStock::new(new.stock)))
                })
            }

            async fn product(&self, id: ProductId) -> Result<Option<(ProductInfo, ProductStock)>> {
                within_deadline!(self, conn, { Self::product_on(conn, id).await })
            }

            async fn products(
                &self,
                after: Option<ProductId>,
                limit: u32,
            ) -> Result<Vec<(ProductInfo, ProductStock)>> {
                within_deadline!(self, conn, {
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        product_columns!(),
                        " FROM products WHERE id > ? ORDER BY id LIMIT ?"
                    ))
                    .bind(after.map_or(0, |id| id.0 as i64))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await?;
                    rows.iter().map(Self::product_from_row).collect()
                })
            }

            async fn load_product(
                &self,
                id: ProductId,
                keys_since: UnixMillis,
            ) -> Result<Option<ProductLoad>> {
                within_deadline!(self, conn, {
                    let Some((info, stock)) = Self::product_on(&mut *conn, id).await? else {
                        return Ok(None);
                    };
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        order_columns!(),
                        " FROM orders WHERE product_id = ? AND status IN \
                         ('PENDING_PAYMENT', 'PAID', 'SHIPPED', 'DELIVERED', 'RETURN_REQUESTED')"
                    ))
                    .bind(id.0 as i64)
                    .fetch_all(&mut *conn)
                    .await?;
                    let live_orders = rows
                        .iter()
                        .map(Self::order_from_row)
                        .collect::<Result<Vec<_>>>()?;
                    let rows = sqlx::query(
                        "SELECT k.user_id, k.idem_key, k.fingerprint, k.refusal, k.created_at, \
                         o.id AS o_id, o.user_id AS o_user_id, o.product_id AS o_product_id, \
                         o.quantity AS o_quantity, o.unit_price AS o_unit_price, \
                         o.status AS o_status, o.created_at AS o_created_at, \
                         o.updated_at AS o_updated_at, o.expires_at AS o_expires_at \
                         FROM idempotency_keys k LEFT JOIN orders o ON o.id = k.result_id \
                         WHERE k.item_kind = 'P' AND k.item_id = ? AND k.created_at >= ?",
                    )
                    .bind(id.0 as i64)
                    .bind(keys_since.0)
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut keys = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let (user, key, fingerprint, recorded_at) = Self::key_parts(row)?;
                        let order = match row.try_get::<Option<String>, _>("o_id")? {
                            None => None,
                            Some(_) => Some(Self::order_from_columns(row, "o_")?),
                        };
                        let outcome = key_outcome(order, row.try_get("refusal")?)?;
                        keys.push(LoadedKey {
                            user,
                            key,
                            fingerprint,
                            outcome,
                            recorded_at,
                        });
                    }
                    Ok(Some(ProductLoad {
                        info,
                        stock,
                        live_orders,
                        keys,
                    }))
                })
            }

            async fn products_due(&self, until: UnixMillis, limit: u32) -> Result<Vec<ProductId>> {
                within_deadline!(self, conn, {
                    let rows = sqlx::query(
                        "SELECT id FROM products WHERE next_due_at <= ? ORDER BY next_due_at LIMIT ?",
                    )
                    .bind(until.0)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await?;
                    rows.iter()
                        .map(|row| Ok(ProductId(row.try_get::<i64, _>("id")? as u64)))
                        .collect()
                })
            }

            async fn order(&self, id: OrderId) -> Result<Option<Order>> {
                within_deadline!(self, conn, {
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        order_columns!(),
                        " FROM orders WHERE id = ?"
                    ))
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await?;
                    row.as_ref().map(Self::order_from_row).transpose()
                })
            }

            async fn user_orders(
                &self,
                user: &UserId,
                before: Option<OrderId>,
                limit: u32,
            ) -> Result<Vec<Order>> {
                within_deadline!(self, conn, {
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        order_columns!(),
                        " FROM orders WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
                    ))
                    .bind(user.as_str())
                    .bind(before.map_or_else(|| "~".to_string(), |id| id.to_string()))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await?;
                    rows.iter().map(Self::order_from_row).collect()
                })
            }

            async fn insert_campaign(
                &self,
                new: &NewCampaign,
            ) -> Result<(CampaignInfo, CampaignStock)> {
                within_deadline!(self, conn, {
                    let row = sqlx::query(
                        "INSERT INTO campaigns (name, quantity, issued, per_user_limit, \
                         discount_kind, discount_value, starts_at, ends_at, created_at) \
                         VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?) RETURNING id",
                    )
                    .bind(new.name.as_str())
                    .bind(new.quantity as i64)
                    .bind(new.per_user_limit as i64)
                    .bind(new.discount.kind())
                    .bind(new.discount.value() as i64)
                    .bind(new.starts_at.map(|t| t.0))
                    .bind(new.ends_at.map(|t| t.0))
                    .bind(new.created_at.0)
                    .fetch_one(&mut *conn)
                    .await?;
                    let info = CampaignInfo {
                        id: CampaignId(row.try_get::<i64, _>("id")? as u64),
                        name: new.name.clone(),
                        per_user_limit: new.per_user_limit,
                        discount: new.discount,
                        starts_at: new.starts_at,
                        ends_at: new.ends_at,
                        created_at: new.created_at,
                    };
                    let stock = CampaignStock {
                        quantity: new.quantity,
                        issued: 0,
                    };
                    Ok((info, stock))
                })
            }

            async fn campaign(
                &self,
                id: CampaignId,
            ) -> Result<Option<(CampaignInfo, CampaignStock)>> {
                within_deadline!(self, conn, { Self::campaign_on(conn, id).await })
            }

            async fn load_campaign(
                &self,
                id: CampaignId,
                keys_since: UnixMillis,
            ) -> Result<Option<CampaignLoad>> {
                within_deadline!(self, conn, {
                    let Some((info, stock)) = Self::campaign_on(&mut *conn, id).await? else {
                        return Ok(None);
                    };
                    let rows = sqlx::query(
                        "SELECT user_id, COUNT(*) AS issued FROM coupons \
                         WHERE campaign_id = ? GROUP BY user_id",
                    )
                    .bind(id.0 as i64)
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut user_issued = HashMap::with_capacity(rows.len());
                    for row in &rows {
                        let issued: i64 = row.try_get("issued")?;
                        user_issued.insert(user_id(row.try_get("user_id")?)?, issued as u64);
                    }
                    let rows = sqlx::query(
                        "SELECT k.user_id, k.idem_key, k.fingerprint, k.refusal, k.created_at, \
                         c.id AS c_id, c.issued_at AS c_issued_at \
                         FROM idempotency_keys k LEFT JOIN coupons c ON c.id = k.result_id \
                         WHERE k.item_kind = 'C' AND k.item_id = ? AND k.created_at >= ?",
                    )
                    .bind(id.0 as i64)
                    .bind(keys_since.0)
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut keys = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let (user, key, fingerprint, recorded_at) = Self::key_parts(row)?;
                        let coupon = match row.try_get::<Option<String>, _>("c_id")? {
                            None => None,
                            Some(coupon_id) => Some(Coupon {
                                id: coupon_id.parse::<CouponId>().map_err(corrupt)?,
                                campaign_id: id,
                                user_id: user.clone(),
                                issued_at: UnixMillis(row.try_get("c_issued_at")?),
                            }),
                        };
                        let outcome = key_outcome(coupon, row.try_get("refusal")?)?;
                        keys.push(LoadedKey {
                            user,
                            key,
                            fingerprint,
                            outcome,
                            recorded_at,
                        });
                    }
                    Ok(Some(CampaignLoad {
                        info,
                        stock,
                        user_issued,
                        keys,
                    }))
                })
            }

            async fn user_coupons(
                &self,
                user: &UserId,
                before: Option<CouponId>,
                limit: u32,
            ) -> Result<Vec<Coupon>> {
                within_deadline!(self, conn, {
                    let rows = sqlx::query(
                        "SELECT id, campaign_id, user_id, issued_at FROM coupons \
                         WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
                    )
                    .bind(user.as_str())
                    .bind(before.map_or_else(|| "~".to_string(), |id| id.to_string()))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *conn)
                    .await?;
                    rows.iter().map(Self::coupon_from_row).collect()
                })
            }

            async fn commit_batches(&self, batches: &[ShardBatch<'_>]) -> Result<(), CommitError> {
                self.$commit(batches).await
            }
        }
    };
}

impl_store!(
    SqliteStore,
    Sqlite,
    SqliteConnection,
    SqliteRow,
    Backend::Sqlite,
    SQLITE_MIGRATIONS,
    commit_prepared
);
impl_store!(
    MySqlStore,
    MySql,
    MySqlConnection,
    MySqlRow,
    Backend::MySql,
    MYSQL_MIGRATIONS,
    commit_in_one_round_trip
);

impl MySqlStore {
    /// The batch as one multi-statement text query: `BEGIN`, the fence, every
    /// insert and update, `COMMIT`, in a single round trip to the server. With
    /// prepared statements a batch took nine or more round trips, and while
    /// one batch is in flight per shard, round trips are what a durable reply
    /// waits for. If any statement fails (the fence fails by design when the
    /// epoch moved), the server stops there with the transaction open; it is
    /// rolled back (or the connection discarded) and the epoch re-read.
    async fn commit_in_one_round_trip(
        &self,
        batches: &[ShardBatch<'_>],
    ) -> Result<(), CommitError> {
        let batch = sort_batch(batches.iter().flat_map(|b| b.mutations));
        let sql = mysql_batch_sql(batches, &batch);
        let mut conn = self.commit_connections.take(&self.commit_pool).await?;
        let executed = tokio::time::timeout(
            self.commit_timeout,
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut *conn),
        )
        .await;
        let Ok(executed) = executed else {
            // Unanswered: the server may have committed or not, and may still.
            // The connection is mid-protocol, so it is closed, not pooled; the
            // writer fails the batch and takes a new epoch, which the server
            // orders after this transaction if it is still running.
            conn.close_on_drop();
            return Err(CommitError::TimedOut(self.commit_timeout));
        };
        match executed {
            Ok(_) => {
                self.commit_connections.keep(conn);
                Ok(())
            }
            Err(error) => {
                let rollback = sqlx::raw_sql("ROLLBACK").execute(&mut *conn);
                match tokio::time::timeout(self.query_timeout, rollback).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => {
                        let _ = conn.close().await;
                    }
                    Err(_) => conn.close_on_drop(),
                }
                // Which shard's epoch moved, if any: every epoch read on one
                // connection, within one deadline.
                let fenced = within_deadline!(self, epochs, {
                    for ShardBatch { shard, epoch, .. } in batches {
                        let current: Option<i64> =
                            sqlx::query_scalar("SELECT epoch FROM shard_epochs WHERE shard = ?")
                                .bind(i64::from(*shard))
                                .fetch_optional(&mut *epochs)
                                .await?;
                        if current != Some(*epoch as i64) {
                            return Ok(Some((*shard, *epoch)));
                        }
                    }
                    Ok(None)
                })?;
                match fenced {
                    Some((shard, epoch)) => Err(CommitError::Fenced { shard, epoch }),
                    None => Err(CommitError::Store(StoreError::Database(error))),
                }
            }
        }
    }
}

/// A string as a MySQL literal that cannot break out of its quotes whatever it
/// holds. Text of letters, digits and `-_.:@` (most user ids) is quoted as is;
/// anything else is written as its UTF-8 bytes in hex, read as utf8mb4. Plain
/// literals are cheaper for the server to parse (a batch of orders is mostly
/// user ids).
fn mysql_text(out: &mut String, text: &str) {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'@'));
    if plain {
        out.push('\'');
        out.push_str(text);
        out.push('\'');
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push_str("_utf8mb4 X'");
    for byte in text.as_bytes() {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
    out.push('\'');
}

/// Rows one `CASE` statement updates at most: MariaDB tries the branches in
/// order for each row, so a statement's work grows with the square of its rows.
const CASE_ROWS_MAX: usize = 64;

/// `UPDATE table SET` each of `columns` (an assignment's left side and
/// operator, e.g. `"views = views + "`) to its value for the row, `WHERE key IN`
/// the rows' keys: one statement per `CASE_ROWS_MAX` rows. `write_key` writes a
/// row's key, `write_value` its value for a column (by index), straight into
/// `out`: a batch has hundreds of rows and each is written without allocating.
fn mysql_update_rows<R>(
    out: &mut String,
    table: &str,
    key: &str,
    columns: &[&str],
    rows: &[R],
    write_key: impl Fn(&mut String, &R),
    write_value: impl Fn(&mut String, &R, usize),
) {
    for chunk in rows.chunks(CASE_ROWS_MAX) {
        out.push_str("UPDATE ");
        out.push_str(table);
        out.push_str(" SET ");
        for (column, assign) in columns.iter().enumerate() {
            if column > 0 {
                out.push_str(", ");
            }
            out.push_str(assign);
            let value = |out: &mut String, row: &R| write_value(out, row, column);
            mysql_case(out, key, chunk, &write_key, value);
        }
        mysql_where_in(out, key, chunk, &write_key);
    }
}

/// The value (`write_value`) for the row being updated, chosen by `key` among
/// `rows`; just the value when there is one row.
fn mysql_case<R>(
    out: &mut String,
    key: &str,
    rows: &[R],
    write_key: impl Fn(&mut String, &R),
    write_value: impl Fn(&mut String, &R),
) {
    if let [row] = rows {
        write_value(out, row);
        return;
    }
    out.push_str("CASE ");
    out.push_str(key);
    for row in rows {
        out.push_str(" WHEN ");
        write_key(out, row);
        out.push_str(" THEN ");
        write_value(out, row);
    }
    out.push_str(" END");
}

/// ` WHERE key IN (..);` for `rows`.
fn mysql_where_in<R>(out: &mut String, key: &str, rows: &[R], write_key: impl Fn(&mut String, &R)) {
    out.push_str(" WHERE ");
    out.push_str(key);
    out.push_str(" IN (");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_key(out, row);
    }
    out.push_str(");");
}

/// A number, written without `fmt`.
fn mysql_int(out: &mut String, value: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// An order id as a quoted literal.
fn mysql_order_id(out: &mut String, id: OrderId) {
    out.push('\'');
    out.push_str(id.0.array_to_str(&mut [0; ulid::ULID_LEN]));
    out.push('\'');
}

fn mysql_opt_int(out: &mut String, value: Option<i64>) {
    match value {
        Some(v) => mysql_int(out, v),
        None => out.push_str("NULL"),
    }
}

/// The SQL of one batch for `commit_in_one_round_trip`. Only integers, ULIDs,
/// fixed status and refusal codes, and hex literals are written into it.
fn mysql_batch_sql(batches: &[ShardBatch<'_>], batch: &Sorted<'_>) -> String {
    use std::fmt::Write as _;
    let mut sql = String::with_capacity(256 + batch.orders.len() * 160);
    sql.push_str("BEGIN;");
    // The fences, one statement: a NOT NULL column set to NULL fails the
    // statement (and so the transaction) unless every shard's epoch is ours; it
    // also takes the shard rows' locks (in key order).
    debug_assert!(
        batches
            .iter()
            .map(|b| b.shard)
            .collect::<std::collections::HashSet<_>>()
            .len()
            == batches.len(),
        "one batch per shard in a transaction"
    );
    let shard = |out: &mut String, b: &ShardBatch<'_>| mysql_int(out, b.shard);
    for chunk in batches.chunks(CASE_ROWS_MAX) {
        sql.push_str("UPDATE shard_epochs SET batches = batches + 1, epoch = IF(epoch = ");
        mysql_case(&mut sql, "shard", chunk, shard, |out, b| {
            mysql_int(out, b.epoch)
        });
        sql.push_str(", epoch, NULL)");
        mysql_where_in(&mut sql, "shard", chunk, shard);
    }
    if !batch.orders.is_empty() {
        sql.push_str(concat!(
            "INSERT INTO orders (",
            order_columns!(),
            ") VALUES "
        ));
        for (i, o) in batch.orders.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            // Written piece by piece: `write!` costs more than the rest of
            // the row, and a batch holds hundreds of rows.
            sql.push('(');
            mysql_order_id(&mut sql, o.id);
            sql.push(',');
            mysql_text(&mut sql, o.user_id.as_str());
            for value in [o.product_id.0, o.quantity, o.unit_price] {
                sql.push(',');
                mysql_int(&mut sql, value);
            }
            sql.push_str(",'");
            sql.push_str(o.status.as_str());
            sql.push('\'');
            for value in [o.created_at.0, o.updated_at.0, o.expires_at.0] {
                sql.push(',');
                mysql_int(&mut sql, value);
            }
            sql.push(')');
        }
        sql.push(';');
    }
    if !batch.coupons.is_empty() {
        sql.push_str("INSERT INTO coupons (id, campaign_id, user_id, issued_at) VALUES ");
        for (i, c) in batch.coupons.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "('{}',{},", c.id, c.campaign_id.0);
            mysql_text(&mut sql, c.user_id.as_str());
            let _ = write!(sql, ",{})", c.issued_at.0);
        }
        sql.push(';');
    }
    if !batch.keys.is_empty() {
        sql.push_str(
            "INSERT INTO idempotency_keys (item_kind, item_id, user_id, idem_key, \
             fingerprint, result_id, refusal, created_at) VALUES ",
        );
        for (i, k) in batch.keys.iter().enumerate() {
            if i > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "('{}',{},", k.item.kind_code(), k.item.raw_id());
            mysql_text(&mut sql, k.user.as_str());
            sql.push(',');
            mysql_text(&mut sql, k.key.as_str());
            let _ = write!(sql, ",{},", k.fingerprint);
            match &k.outcome {
                Ok(id) => {
                    mysql_text(&mut sql, id);
                    sql.push_str(",NULL,");
                }
                Err(refusal) => {
                    let _ = write!(sql, "NULL,'{}',", refusal.code());
                }
            }
            let _ = write!(sql, "{})", k.recorded_at.0);
        }
        sql.push(';');
    }
    // Status changes of stored orders, many per statement like the counts.
    mysql_update_rows(
        &mut sql,
        "orders",
        "id",
        &["status = ", "updated_at = "],
        &batch.updates,
        |out, (id, _, _)| mysql_order_id(out, *id),
        |out, (_, status, updated_at), column| match column {
            0 => {
                out.push('\'');
                out.push_str(status.as_str());
                out.push('\'');
            }
            _ => mysql_int(out, updated_at.0),
        },
    );
    // Every product's counts in one statement (per chunk): as many statements,
    // each of its own cost, made a transaction spanning 50 shards ~9x slower.
    let products: Vec<_> = batch.counts.products.iter().collect();
    for (_, (stock, _, _)) in &products {
        stock.check();
    }
    mysql_update_rows(
        &mut sql,
        "products",
        "id",
        &[
            "total_stock = ",
            "stock_available = ",
            "stock_reserved = ",
            "sold = ",
            "written_off = ",
            "views = views + ",
            "next_due_at = ",
        ],
        &products,
        |out, (id, _)| mysql_int(out, id.0),
        |out, (_, (stock, views_delta, next_due_at)), column| match column {
            0 => mysql_int(out, stock.total),
            1 => mysql_int(out, stock.available),
            2 => mysql_int(out, stock.reserved),
            3 => mysql_int(out, stock.sold),
            4 => mysql_int(out, stock.written_off),
            5 => mysql_int(out, *views_delta),
            _ => mysql_opt_int(out, next_due_at.map(|t| t.0)),
        },
    );
    for info in batch.counts.infos.values() {
        sql.push_str("UPDATE products SET name = ");
        mysql_text(&mut sql, &info.name);
        let _ = write!(sql, ", price = {}, per_user_limit = ", info.price);
        mysql_opt_int(&mut sql, info.per_user_limit.map(|v| v as i64));
        sql.push_str(", sale_starts_at = ");
        mysql_opt_int(&mut sql, info.sale_starts_at.map(|t| t.0));
        sql.push_str(", sale_ends_at = ");
        mysql_opt_int(&mut sql, info.sale_ends_at.map(|t| t.0));
        let _ = write!(sql, " WHERE id = {};", info.id.0);
    }
    let campaigns: Vec<_> = batch.counts.campaigns.iter().collect();
    mysql_update_rows(
        &mut sql,
        "campaigns",
        "id",
        &["issued = "],
        &campaigns,
        |out, (id, _)| mysql_int(out, id.0),
        |out, (_, issued), _| mysql_int(out, **issued),
    );
    sql.push_str("COMMIT");
    sql
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Row;
    use sqlx::sqlite::SqlitePoolOptions;

    use super::CommitConnections;

    async fn holds_table(conn: &mut sqlx::SqliteConnection) -> bool {
        sqlx::query("SELECT count(*) FROM temp.sqlite_master WHERE name = 'mine'")
            .fetch_one(conn)
            .await
            .unwrap()
            .get::<i64, _>(0)
            == 1
    }

    /// A commit's connection is kept for the next commit rather than given
    /// back to the pool (which would ping it twice), unless it has waited too
    /// long, in which case the pool has it back.
    #[tokio::test]
    async fn commit_connections_are_kept_while_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("kept.db").display());
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        let kept = CommitConnections::new(Duration::from_secs(60), 1);
        let mut conn = kept.take(&pool).await.unwrap();
        // A temporary table is its connection's own.
        sqlx::query("CREATE TEMP TABLE mine (x)")
            .execute(&mut *conn)
            .await
            .unwrap();
        kept.keep(conn);
        let other = pool.acquire().await.unwrap();
        assert_eq!(pool.num_idle(), 0, "the kept connection is not the pool's");
        let mut again = kept.take(&pool).await.unwrap();
        assert!(holds_table(&mut again).await, "not the kept connection");
        kept.keep(again);
        drop(other);

        let stale = CommitConnections::new(Duration::ZERO, 1);
        stale.keep(kept.take(&pool).await.unwrap());
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut fresh = stale.take(&pool).await.unwrap();
        assert!(stale.kept.lock().unwrap().is_empty());
        assert!(
            !holds_table(&mut fresh).await,
            "a stale connection handed out again"
        );

        // No more than `kept_max`; none for a pool of fewer than four.
        let one = CommitConnections::new(Duration::from_secs(60), 1);
        one.keep(fresh);
        one.keep(pool.acquire().await.unwrap());
        assert_eq!(one.kept.lock().unwrap().len(), 1);
        assert_eq!(CommitConnections::<sqlx::Sqlite>::for_pool(3).kept_max, 0);
        assert_eq!(CommitConnections::<sqlx::Sqlite>::for_pool(16).kept_max, 4);
    }

    /// MariaDB's commits get a quarter of the connections (at least one) on a
    /// pool of their own; a single connection is shared.
    #[test]
    fn commits_get_a_quarter_of_the_connections() {
        let shares: Vec<_> = [1, 2, 7, 8, 16].map(super::commit_share).into();
        assert_eq!(shares, [None, Some(1), Some(1), Some(2), Some(4)]);
    }

    #[test]
    fn text_literals_cannot_break_out_of_their_quotes() {
        let literal = |text: &str| {
            let mut sql = String::new();
            super::mysql_text(&mut sql, text);
            sql
        };
        assert_eq!(literal("a'b\\c é"), "_utf8mb4 X'6127625c6320c3a9'");
        assert_eq!(
            literal("user-42@shop.example:7_a"),
            "'user-42@shop.example:7_a'"
        );
        assert_eq!(literal(""), "''");
        for tricky in [
            "x' OR '1'='1",
            "a\\",
            "a;b",
            "a b",
            "\u{0}",
            "é",
            "a\"b",
            "`",
            "%",
        ] {
            let sql = literal(tricky);
            let hex = sql
                .strip_prefix("_utf8mb4 X'")
                .and_then(|rest| rest.strip_suffix('\''))
                .unwrap_or_else(|| panic!("{tricky:?} was not written in hex: {sql}"));
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn ladder_cuts_powers_of_two() {
        let rows: Vec<u32> = (0..1_300).collect();
        let sizes: Vec<usize> = super::ladder(&rows).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![1_024, 256, 16, 4]);
        assert_eq!(super::ladder(&rows[..0]).count(), 0);
        assert_eq!(
            super::ladder(&rows[..7])
                .map(<[u32]>::len)
                .collect::<Vec<_>>(),
            vec![4, 2, 1]
        );
    }
    /// A batch of `orders` new orders, `updates` status changes and `products`
    /// products' counts over `shards` shards, and one campaign's count.
    fn batch_mutations(orders: u64, updates: u64, products: u64) -> Vec<super::Mutation> {
        use super::Mutation;
        use crate::domain::{
            CampaignId, Order, OrderId, OrderStatus, ProductId, ProductStock, UnixMillis, UserId,
        };
        let id = |n: u64| OrderId(ulid::Ulid::from_parts(1_700_000_000_000 + n, u128::from(n)));
        let mut mutations: Vec<Mutation> = (0..orders)
            .map(|n| {
                Mutation::OrderPlaced(Order {
                    id: id(n),
                    user_id: UserId::parse(&format!("user-{n}")).unwrap(),
                    product_id: ProductId(1 + n % products.max(1)),
                    quantity: 1,
                    unit_price: 500,
                    status: OrderStatus::PendingPayment,
                    created_at: UnixMillis(1_000 + n as i64),
                    updated_at: UnixMillis(1_000 + n as i64),
                    expires_at: UnixMillis(601_000 + n as i64),
                })
            })
            .collect();
        mutations.extend((0..updates).map(|n| Mutation::OrderUpdated {
            id: id(1_000 + n),
            status: OrderStatus::Paid,
            updated_at: UnixMillis(2_000 + n as i64),
        }));
        mutations.extend((1..=products).map(|p| Mutation::ProductCounts {
            id: ProductId(p),
            stock: ProductStock {
                total: 100 * p,
                available: 100 * p - 3,
                reserved: 2,
                sold: 1,
                written_off: 0,
            },
            views_delta: p,
            next_due_at: (p % 2 == 0).then_some(UnixMillis(9_000 + p as i64)),
        }));
        mutations.push(Mutation::CampaignCounts {
            id: CampaignId(7),
            issued: 42,
        });
        mutations
    }

    fn batch_sql(mutations: &[super::Mutation], shards: u32) -> String {
        let per_shard = mutations.len().div_ceil(shards as usize).max(1);
        let batches: Vec<super::ShardBatch<'_>> = mutations
            .chunks(per_shard)
            .enumerate()
            .map(|(i, mutations)| super::ShardBatch {
                shard: i as u32,
                epoch: 10 + i as u64,
                mutations,
            })
            .collect();
        let sorted = super::sort_batch(batches.iter().flat_map(|b| b.mutations));
        super::mysql_batch_sql(&batches, &sorted)
    }

    #[test]
    fn batch_sql_is_one_statement_per_kind_of_row() {
        // One product: the products' counts are a hash map, so with several
        // their order in the statement is not fixed.
        let mutations = batch_mutations(2, 2, 1);
        let sql = batch_sql(&mutations, 2);
        let expected = [
            "BEGIN;",
            "UPDATE shard_epochs SET batches = batches + 1, epoch = IF(epoch = \
             CASE shard WHEN 0 THEN 10 WHEN 1 THEN 11 END, epoch, NULL) WHERE shard IN (0,1);",
            "INSERT INTO orders (id, user_id, product_id, quantity, unit_price, status, \
             created_at, updated_at, expires_at) VALUES \
             ('01HF7YAT000000000000000000','user-0',1,1,500,'PENDING_PAYMENT',1000,1000,601000),\
             ('01HF7YAT010000000000000001','user-1',1,1,500,'PENDING_PAYMENT',1001,1001,601001);",
            "UPDATE orders SET status = CASE id WHEN '01HF7YATZ800000000000000Z8' THEN 'PAID' \
             WHEN '01HF7YATZ900000000000000Z9' THEN 'PAID' END, updated_at = CASE id \
             WHEN '01HF7YATZ800000000000000Z8' THEN 2000 WHEN '01HF7YATZ900000000000000Z9' \
             THEN 2001 END WHERE id IN ('01HF7YATZ800000000000000Z8','01HF7YATZ900000000000000Z9');",
            "UPDATE products SET total_stock = 100, stock_available = 97, stock_reserved = 2, \
             sold = 1, written_off = 0, views = views + 1, next_due_at = NULL WHERE id IN (1);",
            "UPDATE campaigns SET issued = 42 WHERE id IN (7);",
            "COMMIT",
        ]
        .concat();
        assert_eq!(sql, expected);
    }
}
