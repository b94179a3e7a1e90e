//! The lock-based designs flashstock is compared with, each behind the same
//! `POST /v1/orders` as flashstock (same JWT check, same JSON in and out, the
//! same order row stored), each written as well as its design allows: pooled
//! connections, prepared statements, one round trip where the design permits.
//!
//! Tables (MariaDB): `products (id, stock, version, price)` and flashstock's
//! own `orders` table, columns and indexes, taken from its migration.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use flashstock::domain::{Order, OrderId, OrderStatus, ProductId, Refusal, UnixMillis, UserId};
use flashstock::http::{ApiError, Auth, BODY_BYTES_MAX, order_placed};
use flashstock::persistence::insert_orders;
use serde::Deserialize;
use sqlx::MySqlPool;
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    Noop,
    ForUpdate,
    Optimistic,
    Conditional,
    RedisLock,
    RedisLua,
}

impl Baseline {
    pub fn parse(name: &str) -> Option<Baseline> {
        Some(match name {
            "noop" => Baseline::Noop,
            "mysql-for-update" => Baseline::ForUpdate,
            "mysql-optimistic" => Baseline::Optimistic,
            "mysql-conditional" => Baseline::Conditional,
            "redis-lock" => Baseline::RedisLock,
            "redis-lua" => Baseline::RedisLua,
            _ => return None,
        })
    }
}

/// Connections in each baseline's MariaDB pool: enough to keep the server
/// busy under 256 client connections without thrashing it.
const POOL_CONNECTIONS: u32 = 64;
/// How long a request may spend retrying (optimistic version, lock wait)
/// before it is answered 503.
const RETRY_BUDGET: Duration = Duration::from_secs(5);
/// The Redis lock's lease: longer than any transaction it guards.
const LOCK_LEASE_MS: u64 = 3_000;
/// The price of the baselines' products, the loader's for flashstock's: noop,
/// which stores nothing, answers with it.
pub const PRICE: u64 = flashstock::loadtest::scenario::PRODUCT_PRICE;
/// Rows per multi-row INSERT of the redis-lua writer.
const LUA_WRITER_BATCH_MAX: usize = 1_000;

/// How long an unpaid order holds its units: flashstock's default
/// `--reservation-ttl`, so the stored rows are alike.
static RESERVATION_TTL: LazyLock<Duration> = LazyLock::new(|| {
    flashstock::config::parse_duration(flashstock::config::DEFAULT_RESERVATION_TTL)
        .expect("flashstock's default reservation TTL parses")
});

const PRODUCTS_TABLE: &str = "CREATE TABLE products (id BIGINT PRIMARY KEY, \
     stock BIGINT NOT NULL, version BIGINT NOT NULL DEFAULT 0, price BIGINT NOT NULL)";

/// The baselines' tables: their own `products`, and flashstock's `orders`
/// (the same row, the same two secondary indexes), so every design stores the
/// same order.
pub fn schema() -> [&'static str; 2] {
    [PRODUCTS_TABLE, flashstock_orders_table()]
}

/// `CREATE TABLE orders (...)` as flashstock's MariaDB migration writes it.
fn flashstock_orders_table() -> &'static str {
    let migration = include_str!("../../migrations/mysql/0001_init.sql");
    let start = migration
        .find("CREATE TABLE orders (")
        .expect("the migration creates orders");
    let end = start + migration[start..].find(");").expect("a closed statement") + 1;
    &migration[start..end]
}

/// Compare-and-delete: release the lock only if it is still ours.
const RELEASE_LOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
/// Check-and-decrement of the stock counter.
const DECREMENT_STOCK: &str = "local stock = tonumber(redis.call('GET', KEYS[1]) or '0') \
     if stock >= tonumber(ARGV[1]) then redis.call('DECRBY', KEYS[1], ARGV[1]) return 1 \
     else return 0 end";

pub fn redis_stock_key(namespace: &str, product: u64) -> String {
    format!("{namespace}:stock:{product}")
}

struct Server {
    baseline: Baseline,
    auth: Auth,
    pool: Option<MySqlPool>,
    redis: Option<redis::aio::MultiplexedConnection>,
    namespace: String,
    release: redis::Script,
    decrement: redis::Script,
    lua_orders: Option<mpsc::Sender<Order>>,
    /// Product prices, read once: catalog data the designs may cache.
    prices: DashMap<u64, u64>,
}

impl Server {
    /// The product's price, from the cache or the database.
    async fn price(&self, product: u64) -> anyhow::Result<Option<u64>> {
        if let Some(price) = self.prices.get(&product) {
            return Ok(Some(*price));
        }
        let price: Option<i64> = sqlx::query_scalar("SELECT price FROM products WHERE id = ?")
            .bind(product as i64)
            .fetch_optional(self.pool.as_ref().expect("pool"))
            .await?;
        let price = price.map(|p| p as u64);
        if let Some(price) = price {
            self.prices.insert(product, price);
        }
        Ok(price)
    }
}

/// The order a design places: flashstock's, field for field.
fn new_order(user: &UserId, order: &CreateOrder, unit_price: u64) -> Order {
    let now = UnixMillis::now();
    Order {
        id: OrderId::generate(),
        user_id: user.clone(),
        product_id: ProductId(order.product_id),
        quantity: order.quantity,
        unit_price,
        status: OrderStatus::PendingPayment,
        created_at: now,
        updated_at: now,
        expires_at: now.plus(*RESERVATION_TTL),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrder {
    product_id: u64,
    quantity: u64,
}

enum Outcome {
    Placed(Order),
    OutOfStock,
    GaveUp,
}

/// Serves `baseline` on `listener` until the process is killed.
pub async fn serve(
    baseline: Baseline,
    listener: tokio::net::TcpListener,
    jwt_secret: &str,
    mysql_url: &str,
    redis_url: &str,
    namespace: &str,
) -> anyhow::Result<()> {
    let pool = if baseline == Baseline::Noop {
        None
    } else {
        Some(
            sqlx::mysql::MySqlPoolOptions::new()
                .max_connections(POOL_CONNECTIONS)
                .min_connections(POOL_CONNECTIONS)
                .connect(mysql_url)
                .await?,
        )
    };
    let redis = if matches!(baseline, Baseline::RedisLock | Baseline::RedisLua) {
        Some(
            redis::Client::open(redis_url)?
                .get_multiplexed_async_connection()
                .await?,
        )
    } else {
        None
    };
    let lua_orders = (baseline == Baseline::RedisLua).then(|| {
        let (tx, rx) = mpsc::channel(100_000);
        tokio::spawn(write_behind(pool.clone().expect("a pool"), rx));
        tx
    });
    let state = Arc::new(Server {
        baseline,
        auth: Auth::new(jwt_secret),
        pool,
        redis,
        namespace: namespace.to_string(),
        release: redis::Script::new(RELEASE_LOCK),
        decrement: redis::Script::new(DECREMENT_STOCK),
        lua_orders,
        prices: DashMap::new(),
    });
    // `POST /v1/orders` answered without a router, as flashstock answers it
    // (`flashstock::http::Api`), so that every server pays the same for HTTP;
    // any other request is 404.
    let orders = tower::service_fn(move |request: Request| {
        let server = state.clone();
        async move {
            if request.method() != Method::POST || request.uri().path() != "/v1/orders" {
                return Ok::<_, Infallible>(StatusCode::NOT_FOUND.into_response());
            }
            let (parts, body) = request.into_parts();
            let Ok(body) = axum::body::to_bytes(body, BODY_BYTES_MAX).await else {
                return Ok(StatusCode::PAYLOAD_TOO_LARGE.into_response());
            };
            Ok(place(State(server), parts.headers, body).await)
        }
    });
    axum::serve(listener, tower::make::Shared::new(orders)).await?;
    Ok(())
}

async fn place(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(caller) = token.and_then(|t| server.auth.verify(t).ok()) else {
        return ApiError::unauthorized("a valid bearer token is required").into_response();
    };
    let Ok(order) = serde_json::from_slice::<CreateOrder>(&body) else {
        return ApiError::invalid_body("product_id and quantity are required").into_response();
    };
    if !(1..=10).contains(&order.quantity) {
        return ApiError::invalid_body("quantity must be 1..=10").into_response();
    }
    // noop stores nothing, so it has no price to read: it answers with the bench's.
    let price = match server.baseline {
        Baseline::Noop => Ok(Some(PRICE)),
        _ => server.price(order.product_id).await,
    };
    let outcome = match price {
        Ok(Some(price)) => {
            let order = new_order(&caller.user, &order, price);
            match server.baseline {
                Baseline::Noop => Ok(Outcome::Placed(order)),
                Baseline::ForUpdate => for_update(&server, order).await,
                Baseline::Optimistic => optimistic(&server, order).await,
                Baseline::Conditional => conditional(&server, order).await,
                Baseline::RedisLock => redis_lock(&server, order).await,
                Baseline::RedisLua => redis_lua(&server, order).await,
            }
        }
        Ok(None) => Ok(Outcome::OutOfStock),
        Err(error) => Err(error),
    };
    match outcome {
        Ok(Outcome::Placed(order)) => order_placed(order).into_response(),
        Ok(Outcome::OutOfStock) => ApiError::from(Refusal::OutOfStock).into_response(),
        Ok(Outcome::GaveUp) => ApiError::unavailable("gave up retrying").into_response(),
        Err(error) => {
            eprintln!("{error:#}");
            ApiError::internal().into_response()
        }
    }
}

/// The order row, as flashstock writes it.
async fn insert_order(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    order: &Order,
) -> sqlx::Result<()> {
    insert_orders::<sqlx::MySql>([order])
        .build()
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `BEGIN; SELECT ... FOR UPDATE; UPDATE; INSERT; COMMIT`.
async fn for_update(server: &Server, order: Order) -> anyhow::Result<Outcome> {
    let mut tx = server.pool.as_ref().expect("pool").begin().await?;
    let stock: Option<i64> =
        sqlx::query_scalar("SELECT stock FROM products WHERE id = ? FOR UPDATE")
            .bind(order.product_id.0 as i64)
            .fetch_optional(&mut *tx)
            .await?;
    if stock.is_none_or(|s| s < order.quantity as i64) {
        tx.rollback().await?;
        return Ok(Outcome::OutOfStock);
    }
    sqlx::query("UPDATE products SET stock = stock - ? WHERE id = ?")
        .bind(order.quantity as i64)
        .bind(order.product_id.0 as i64)
        .execute(&mut *tx)
        .await?;
    insert_order(&mut tx, &order).await?;
    tx.commit().await?;
    Ok(Outcome::Placed(order))
}

/// Read stock and version; `UPDATE ... WHERE version = ?`; retry on conflict.
async fn optimistic(server: &Server, order: Order) -> anyhow::Result<Outcome> {
    let pool = server.pool.as_ref().expect("pool");
    let deadline = Instant::now() + RETRY_BUDGET;
    loop {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT stock, version FROM products WHERE id = ?")
                .bind(order.product_id.0 as i64)
                .fetch_optional(pool)
                .await?;
        let Some((stock, version)) = row else {
            return Ok(Outcome::OutOfStock);
        };
        if stock < order.quantity as i64 {
            return Ok(Outcome::OutOfStock);
        }
        let mut tx = pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE products SET stock = stock - ?, version = version + 1 WHERE id = ? AND version = ?",
        )
        .bind(order.quantity as i64)
        .bind(order.product_id.0 as i64)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 1 {
            insert_order(&mut tx, &order).await?;
            tx.commit().await?;
            return Ok(Outcome::Placed(order));
        }
        tx.rollback().await?;
        if Instant::now() > deadline {
            return Ok(Outcome::GaveUp);
        }
    }
}

/// `UPDATE ... SET stock = stock - q WHERE id = ? AND stock >= q` and the order
/// insert in one transaction.
async fn conditional(server: &Server, order: Order) -> anyhow::Result<Outcome> {
    let mut tx = server.pool.as_ref().expect("pool").begin().await?;
    let updated = sqlx::query("UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?")
        .bind(order.quantity as i64)
        .bind(order.product_id.0 as i64)
        .bind(order.quantity as i64)
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(Outcome::OutOfStock);
    }
    insert_order(&mut tx, &order).await?;
    tx.commit().await?;
    Ok(Outcome::Placed(order))
}

/// A Redisson-style lock (`SET NX PX`, retry with backoff, compare-and-delete
/// release) around the conditional transaction.
async fn redis_lock(server: &Server, order: Order) -> anyhow::Result<Outcome> {
    let mut redis = server.redis.clone().expect("redis");
    let key = format!("{}:lock:{}", server.namespace, order.product_id.0);
    let token = OrderId::generate().to_string();
    let deadline = Instant::now() + RETRY_BUDGET;
    let mut backoff = Duration::from_millis(1);
    loop {
        let acquired: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_LEASE_MS)
            .query_async(&mut redis)
            .await?;
        if acquired.is_some() {
            break;
        }
        if Instant::now() > deadline {
            return Ok(Outcome::GaveUp);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(20));
    }
    let outcome = conditional(server, order).await;
    let _: i64 = server
        .release
        .key(&key)
        .arg(&token)
        .invoke_async(&mut redis)
        .await?;
    outcome
}

/// Check-and-decrement in a Lua script; the order row is written to MariaDB
/// after the reply, in batches (fast, and not durable).
async fn redis_lua(server: &Server, order: Order) -> anyhow::Result<Outcome> {
    let mut redis = server.redis.clone().expect("redis");
    let key = redis_stock_key(&server.namespace, order.product_id.0);
    let taken: i64 = server
        .decrement
        .key(&key)
        .arg(order.quantity)
        .invoke_async(&mut redis)
        .await?;
    if taken == 0 {
        return Ok(Outcome::OutOfStock);
    }
    server
        .lua_orders
        .as_ref()
        .expect("a writer")
        .send(order.clone())
        .await
        .map_err(|_| anyhow::anyhow!("the order writer stopped"))?;
    Ok(Outcome::Placed(order))
}

async fn write_behind(pool: MySqlPool, mut rx: mpsc::Receiver<Order>) {
    let mut rows = Vec::with_capacity(LUA_WRITER_BATCH_MAX);
    while rx.recv_many(&mut rows, LUA_WRITER_BATCH_MAX).await > 0 {
        if let Err(error) = insert_orders::<sqlx::MySql>(&rows)
            .build()
            .execute(&pool)
            .await
        {
            eprintln!("redis-lua writer: {error}");
        }
        rows.clear();
    }
}
