//! The designs the flash-sale bench compares flashstock with
//! (`benches/flash_sale/servers.rs`) do the same work per order as flashstock:
//! they answer the same JSON and store the same order row, in flashstock's own
//! `orders` table.

#[path = "../benches/flash_sale/servers.rs"]
#[allow(dead_code)]
mod servers;

mod common;

use std::collections::BTreeSet;

use common::{Backend, Server, TestDb, token};
use serde_json::Value;
use servers::Baseline;
use sqlx::Row;

fn keys(body: &Value) -> BTreeSet<String> {
    body.as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baselines_answer_and_store_what_flashstock_does() {
    let Some(baseline_db) = TestDb::new(Backend::MySql).await else {
        return;
    };
    let Some(flashstock_db) = TestDb::new(Backend::MySql).await else {
        return;
    };

    let pool = sqlx::MySqlPool::connect(&baseline_db.url).await.unwrap();
    for sql in servers::schema() {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    sqlx::query("INSERT INTO products (id, stock, price) VALUES (1, 10, ?)")
        .bind(servers::PRICE as i64)
        .execute(&pool)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::from_std(
        flashstock::app::listen("127.0.0.1:0".parse().unwrap()).unwrap(),
    )
    .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let database_url = baseline_db.url.clone();
    tokio::spawn(async move {
        servers::serve(
            Baseline::ForUpdate,
            listener,
            common::JWT_SECRET,
            &database_url,
            "redis://127.0.0.1:6379",
            "unused",
        )
        .await
    });
    // The listener is bound: the request waits in its queue until the server serves.
    let reply = reqwest::Client::new()
        .post(format!("{url}/v1/orders"))
        .bearer_auth(token("alice", false))
        .json(&serde_json::json!({"product_id": 1, "quantity": 2}))
        .send()
        .await
        .expect("the baseline answers");
    assert_eq!(reply.status(), 201);
    let location = reply.headers()["location"].to_str().unwrap().to_string();
    let baseline: Value = reply.json().await.unwrap();
    let id = baseline["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(baseline["unit_price"], servers::PRICE);
    assert_eq!(baseline["amount"], 2 * servers::PRICE);
    assert_eq!(baseline["status"], "PENDING_PAYMENT");

    let flashstock = Server::start(&flashstock_db, &[]);
    let product = flashstock.create_product(10, None).await;
    let (status, ours) = flashstock
        .order(&token("alice", false), product, 2, None)
        .await;
    assert_eq!(status, 201, "{ours}");
    assert_eq!(keys(&baseline), keys(&ours), "the same reply fields");

    // The same row: every column flashstock writes, filled alike.
    let columns = "user_id, product_id, quantity, unit_price, status, \
                   expires_at - created_at, updated_at - created_at";
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM orders WHERE id = ?"
    )))
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let flashstock_pool = sqlx::MySqlPool::connect(&flashstock_db.url).await.unwrap();
    let ours_row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM orders WHERE id = ?"
    )))
    .bind(ours["id"].as_str().unwrap())
    .fetch_one(&flashstock_pool)
    .await
    .unwrap();
    let values = |row: &sqlx::mysql::MySqlRow| {
        (
            row.get::<String, _>(0),
            row.get::<i64, _>(2),
            row.get::<String, _>(4),
            row.get::<i64, _>(5),
            row.get::<i64, _>(6),
        )
    };
    assert_eq!(
        values(&row),
        ("alice".into(), 2, "PENDING_PAYMENT".into(), 600_000, 0)
    );
    assert_eq!(values(&row), values(&ours_row));
    assert_eq!(row.get::<i64, _>(3), servers::PRICE as i64);

    // The same table: columns and indexes.
    let shape = |pool: sqlx::MySqlPool| async move {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name, column_type FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = 'orders' ORDER BY ordinal_position",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT index_name, column_name FROM information_schema.statistics \
             WHERE table_schema = DATABASE() AND table_name = 'orders' \
             ORDER BY index_name, seq_in_index",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        (columns, indexes)
    };
    let theirs = shape(pool).await;
    assert_eq!(theirs.1.len(), 5, "primary key and two two-column indexes");
    assert_eq!(theirs, shape(flashstock_pool).await);
}
