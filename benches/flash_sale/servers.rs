//! The lock-based designs flashstock is compared with, each behind the same
//! `POST /v1/orders` as flashstock (same JWT check, same JSON in and out), each
//! written as well as its design allows: pooled connections, prepared
//! statements, one round trip where the design permits.
//!
//! Tables (MariaDB): `products (id, stock, version)` and
//! `orders (id CHAR(26), product_id, user_id, quantity, created_at)`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flashstock::domain::{OrderId, UnixMillis, UserId};
use flashstock::http::Auth;
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
/// Rows per multi-row INSERT of the redis-lua writer.
const LUA_WRITER_BATCH_MAX: usize = 1_000;

pub const SCHEMA: &[&str] = &[
    "CREATE TABLE products (id BIGINT PRIMARY KEY, stock BIGINT NOT NULL, \
     version BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE orders (id CHAR(26) PRIMARY KEY, product_id BIGINT NOT NULL, \
     user_id VARCHAR(128) NOT NULL, quantity BIGINT NOT NULL, created_at BIGINT NOT NULL, \
     KEY orders_by_product (product_id))",
];

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
    lua_orders: Option<mpsc::Sender<(String, u64, String, u64)>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrder {
    product_id: u64,
    quantity: u64,
}

enum Outcome {
    Placed(String),
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
    });
    let app = axum::Router::new()
        .route("/v1/orders", post(place))
        .with_state(state);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn place(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(caller) = token.and_then(|t| server.auth.verify(t).ok()) else {
        return problem(StatusCode::UNAUTHORIZED, "unauthorized");
    };
    let Ok(order) = serde_json::from_slice::<CreateOrder>(&body) else {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    };
    if !(1..=10).contains(&order.quantity) {
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body");
    }
    let outcome = match server.baseline {
        Baseline::Noop => Ok(Outcome::Placed(OrderId::generate().to_string())),
        Baseline::ForUpdate => for_update(&server, &caller.user, &order).await,
        Baseline::Optimistic => optimistic(&server, &caller.user, &order).await,
        Baseline::Conditional => conditional(&server, &caller.user, &order).await,
        Baseline::RedisLock => redis_lock(&server, &caller.user, &order).await,
        Baseline::RedisLua => redis_lua(&server, &caller.user, &order).await,
    };
    match outcome {
        Ok(Outcome::Placed(id)) => {
            let body = serde_json::json!({
                "id": id, "user_id": caller.user.as_str(), "product_id": order.product_id,
                "quantity": order.quantity, "status": "PENDING_PAYMENT",
            });
            (StatusCode::CREATED, axum::Json(body)).into_response()
        }
        Ok(Outcome::OutOfStock) => problem(StatusCode::CONFLICT, "out_of_stock"),
        Ok(Outcome::GaveUp) => problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Err(error) => {
            eprintln!("{error:#}");
            problem(StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    }
}

fn problem(status: StatusCode, code: &str) -> Response {
    let body = serde_json::json!({"type": format!("/problems/{code}"), "title": code,
                                  "status": status.as_u16(), "detail": code, "code": code});
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn insert_order(
    tx: &mut sqlx::Transaction<'_, sqlx::MySql>,
    user: &UserId,
    order: &CreateOrder,
) -> sqlx::Result<String> {
    let id = OrderId::generate().to_string();
    sqlx::query(
        "INSERT INTO orders (id, product_id, user_id, quantity, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(order.product_id as i64)
    .bind(user.as_str())
    .bind(order.quantity as i64)
    .bind(UnixMillis::now().0)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// `BEGIN; SELECT ... FOR UPDATE; UPDATE; INSERT; COMMIT`.
async fn for_update(
    server: &Server,
    user: &UserId,
    order: &CreateOrder,
) -> anyhow::Result<Outcome> {
    let mut tx = server.pool.as_ref().expect("pool").begin().await?;
    let stock: Option<i64> =
        sqlx::query_scalar("SELECT stock FROM products WHERE id = ? FOR UPDATE")
            .bind(order.product_id as i64)
            .fetch_optional(&mut *tx)
            .await?;
    if stock.is_none_or(|s| s < order.quantity as i64) {
        tx.rollback().await?;
        return Ok(Outcome::OutOfStock);
    }
    sqlx::query("UPDATE products SET stock = stock - ? WHERE id = ?")
        .bind(order.quantity as i64)
        .bind(order.product_id as i64)
        .execute(&mut *tx)
        .await?;
    let id = insert_order(&mut tx, user, order).await?;
    tx.commit().await?;
    Ok(Outcome::Placed(id))
}

/// Read stock and version; `UPDATE ... WHERE version = ?`; retry on conflict.
async fn optimistic(
    server: &Server,
    user: &UserId,
    order: &CreateOrder,
) -> anyhow::Result<Outcome> {
    let pool = server.pool.as_ref().expect("pool");
    let deadline = Instant::now() + RETRY_BUDGET;
    loop {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT stock, version FROM products WHERE id = ?")
                .bind(order.product_id as i64)
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
        .bind(order.product_id as i64)
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 1 {
            let id = insert_order(&mut tx, user, order).await?;
            tx.commit().await?;
            return Ok(Outcome::Placed(id));
        }
        tx.rollback().await?;
        if Instant::now() > deadline {
            return Ok(Outcome::GaveUp);
        }
    }
}

/// `UPDATE ... SET stock = stock - q WHERE id = ? AND stock >= q` and the order
/// insert in one transaction.
async fn conditional(
    server: &Server,
    user: &UserId,
    order: &CreateOrder,
) -> anyhow::Result<Outcome> {
    let mut tx = server.pool.as_ref().expect("pool").begin().await?;
    let updated = sqlx::query("UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?")
        .bind(order.quantity as i64)
        .bind(order.product_id as i64)
        .bind(order.quantity as i64)
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(Outcome::OutOfStock);
    }
    let id = insert_order(&mut tx, user, order).await?;
    tx.commit().await?;
    Ok(Outcome::Placed(id))
}

/// A Redisson-style lock (`SET NX PX`, retry with backoff, compare-and-delete
/// release) around the conditional transaction.
async fn redis_lock(
    server: &Server,
    user: &UserId,
    order: &CreateOrder,
) -> anyhow::Result<Outcome> {
    let mut redis = server.redis.clone().expect("redis");
    let key = format!("{}:lock:{}", server.namespace, order.product_id);
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
    let outcome = conditional(server, user, order).await;
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
async fn redis_lua(server: &Server, user: &UserId, order: &CreateOrder) -> anyhow::Result<Outcome> {
    let mut redis = server.redis.clone().expect("redis");
    let key = redis_stock_key(&server.namespace, order.product_id);
    let taken: i64 = server
        .decrement
        .key(&key)
        .arg(order.quantity)
        .invoke_async(&mut redis)
        .await?;
    if taken == 0 {
        return Ok(Outcome::OutOfStock);
    }
    let id = OrderId::generate().to_string();
    let row = (
        id.clone(),
        order.product_id,
        user.as_str().to_string(),
        order.quantity,
    );
    server
        .lua_orders
        .as_ref()
        .expect("a writer")
        .send(row)
        .await
        .map_err(|_| anyhow::anyhow!("the order writer stopped"))?;
    Ok(Outcome::Placed(id))
}

async fn write_behind(pool: MySqlPool, mut rx: mpsc::Receiver<(String, u64, String, u64)>) {
    let mut rows = Vec::with_capacity(LUA_WRITER_BATCH_MAX);
    while rx.recv_many(&mut rows, LUA_WRITER_BATCH_MAX).await > 0 {
        let mut insert = sqlx::QueryBuilder::<sqlx::MySql>::new(
            "INSERT INTO orders (id, product_id, user_id, quantity, created_at) ",
        );
        let now = UnixMillis::now().0;
        insert.push_values(rows.drain(..), |mut b, (id, product, user, quantity)| {
            b.push_bind(id)
                .push_bind(product as i64)
                .push_bind(user)
                .push_bind(quantity as i64)
                .push_bind(now);
        });
        if let Err(error) = insert.build().execute(&pool).await {
            eprintln!("redis-lua writer: {error}");
        }
    }
}
