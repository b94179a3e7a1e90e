//! The database goes down under load and comes back (MariaDB, through a proxy
//! the test cuts), then has every connection of the server killed: while it is down, requests are refused with 503 `unavailable`
//! and `Retry-After`, never a 500; nothing acknowledged is lost; once it is back
//! the server takes orders again without a restart; and a client that retries
//! each refused request with its `Idempotency-Key` ends with exactly one order
//! per key, whether or not the refused attempt reached the database.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{Backend, Server, TestDb, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Order requests at most in the whole load (bounded, as every load here).
const LOAD_REQUESTS_MAX: usize = 20_000;
const LOAD_CONNECTIONS: usize = 16;
/// Acknowledgements before the cut, and after the restore before the load stops.
const ACKS_EACH_SIDE: usize = 200;
const OUTAGE: Duration = Duration::from_secs(3);
/// How long the server may take to take orders again after the restore.
const RECOVERY_MAX: Duration = Duration::from_secs(60);

/// One order request's key and what it got: status, `code`, `Retry-After`,
/// order id.
#[derive(Debug)]
struct Reply {
    key: String,
    status: StatusCode,
    code: Option<String>,
    retry_after: bool,
    order: Option<String>,
}

async fn order(client: &reqwest::Client, url: &str, user: &str, product: u64, key: &str) -> Reply {
    let response = client
        .post(format!("{url}/v1/orders"))
        .bearer_auth(token(user, false))
        .header("Idempotency-Key", key)
        .json(&json!({"product_id": product, "quantity": 1}))
        .send()
        .await
        .expect("the server answers while its database is down");
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Reply {
        key: key.to_string(),
        status,
        code: body["code"].as_str().map(str::to_string),
        retry_after,
        order: body["id"].as_str().map(str::to_string),
    }
}

/// The user a key's requests are made as: one per load connection.
fn user_of(key: &str) -> String {
    format!("buyer-{}", key.split('-').nth(1).expect("key-<worker>-<n>"))
}

/// A server whose database connections go through a proxy the test controls.
async fn server_behind_proxy(db: &TestDb, extra: &[&str]) -> (Server, Proxy, reqwest::Url) {
    let mut through_proxy = reqwest::Url::parse(&db.url).expect("database url");
    let upstream = tokio::net::lookup_host((
        through_proxy.host_str().expect("database host").to_string(),
        through_proxy.port().unwrap_or(3306),
    ))
    .await
    .expect("database address")
    .next()
    .expect("an address");
    let proxy = Proxy::start(upstream).await;
    through_proxy.set_ip_host(proxy.address.ip()).unwrap();
    through_proxy.set_port(Some(proxy.address.port())).unwrap();
    let server = Server::start_on(db, through_proxy.as_str(), extra);
    (server, proxy, through_proxy)
}

/// `LOAD_CONNECTIONS` buyers ordering one unit each, a new key every time,
/// until stopped.
struct Load {
    replies: Arc<Mutex<Vec<Reply>>>,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server, product: u64) -> Load {
        let replies = Arc::new(Mutex::new(Vec::<Reply>::new()));
        let acks = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..LOAD_CONNECTIONS)
            .map(|worker| {
                let (client, url) = (server.client.clone(), server.url.clone());
                let (replies, acks, next, stop) =
                    (replies.clone(), acks.clone(), next.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed)
                        && next.fetch_add(1, Ordering::Relaxed) < LOAD_REQUESTS_MAX
                    {
                        let key = format!("key-{worker}-{}", ulid::Ulid::new());
                        let reply = order(&client, &url, &user_of(&key), product, &key).await;
                        if reply.status == StatusCode::CREATED {
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        replies.lock().unwrap().push(reply);
                    }
                })
            })
            .collect();
        Load {
            replies,
            acks,
            stop,
            workers,
        }
    }

    fn acks(&self) -> usize {
        self.acks.load(Ordering::Relaxed)
    }

    /// Waits until `count` orders in all have been acknowledged.
    async fn wait_for_acks(&self, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.acks() < count {
            assert!(
                Instant::now() < deadline,
                "{} acknowledgements, not {count}, within {within:?}",
                self.acks()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn first_order(&self) -> Option<String> {
        self.replies
            .lock()
            .unwrap()
            .iter()
            .find_map(|r| r.order.clone())
    }

    async fn stop(self) -> Vec<Reply> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        std::mem::take(&mut *self.replies.lock().unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_under_load() {
    let Some(db) = TestDb::new(Backend::MySql).await else {
        return;
    };
    let (server, proxy, through_proxy) = server_behind_proxy(&db, &[]).await;
    let product = server.create_product(1_000_000, None).await;
    let load = Load::start(&server, product);
    load.wait_for_acks(ACKS_EACH_SIDE, RECOVERY_MAX).await;
    let acked_before_cut = load.first_order();

    proxy.cut();
    tokio::time::sleep(OUTAGE / 2).await;
    let acks_in_outage = load.acks();
    // Readiness says so, and reads that need the database are refused, not failed.
    let (status, body) = server
        .request(Method::GET, "/readyz", None, None, None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{body}"
    );
    let path = format!("/v1/orders/{}", acked_before_cut.expect("an order"));
    let (status, body) = server
        .request(
            Method::GET,
            &path,
            Some(&token("buyer-0", false)),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{body}"
    );
    tokio::time::sleep(OUTAGE / 2).await;
    assert_eq!(
        load.acks(),
        acks_in_outage,
        "orders were acknowledged with the database down"
    );

    proxy.restore();
    load.wait_for_acks(acks_in_outage + ACKS_EACH_SIDE, RECOVERY_MAX)
        .await;

    // Then every connection the server has to the database is killed at once,
    // as a restarting database or an operator would: refused or taken, again.
    let probe = db.probe().await;
    let pool = probe.mysql();
    let database = through_proxy.path().trim_start_matches('/').to_string();
    let sessions: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> CONNECTION_ID()",
    )
    .bind(&database)
    .fetch_all(pool)
    .await
    .expect("the server's sessions");
    assert!(!sessions.is_empty(), "the server holds no connection");
    for session in &sessions {
        // A session may end by itself meanwhile.
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("KILL CONNECTION {session}")))
            .execute(pool)
            .await;
    }
    load.wait_for_acks(load.acks() + ACKS_EACH_SIDE, RECOVERY_MAX)
        .await;
    let replies = load.stop().await;
    let (status, body) = server
        .request(Method::GET, "/readyz", None, None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    nothing_lost_one_order_per_key(&server, &probe, product, &replies).await;
}

/// After a fault: every reply was an order or a refusal to come back later;
/// every acknowledged order is stored; each refused request retried with its
/// key gets an order, the one its first attempt stored if that reached the
/// database, and every key ends with exactly one; the counts add up and the
/// server's live view is the stored one. Returns how many refused requests
/// had in fact been stored.
async fn nothing_lost_one_order_per_key(
    server: &Server,
    probe: &common::Probe,
    product: u64,
    replies: &[Reply],
) -> usize {
    let by_code: Vec<(StatusCode, Value)> = replies
        .iter()
        .map(|reply| (reply.status, json!({ "code": reply.code })))
        .collect();
    let tally = common::tally(&by_code);
    // Orders or refusals to come back later, nothing else.
    for reply in replies {
        let refused = reply.status == StatusCode::SERVICE_UNAVAILABLE
            && reply.code.as_deref() == Some("unavailable")
            && reply.retry_after;
        assert!(
            reply.status == StatusCode::CREATED || refused,
            "{reply:?}; all replies: {tally:?}"
        );
    }
    let refused: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status != StatusCode::CREATED)
        .collect();
    assert!(!refused.is_empty(), "the outage was not felt: {tally:?}");

    // Nothing acknowledged is lost.
    let stored: HashSet<String> = probe
        .orders(product)
        .await
        .into_iter()
        .map(|o| o.0)
        .collect();
    let acked: HashMap<&str, &str> = replies
        .iter()
        .filter_map(|r| Some((r.key.as_str(), r.order.as_deref()?)))
        .collect();
    let lost: Vec<&&str> = acked.values().filter(|id| !stored.contains(**id)).collect();
    assert!(lost.is_empty(), "acknowledged orders lost: {lost:?}");

    // Each refused request, retried with its key, gets an order: the one its
    // first attempt stored if that attempt reached the database, else a new one.
    // Either way every key ends with exactly one order.
    let mut orders_by_key: HashMap<&str, String> = acked
        .iter()
        .map(|(key, id)| (*key, id.to_string()))
        .collect();
    let mut stored_though_refused = 0;
    for first in &refused {
        let retry = order(
            &server.client,
            &server.url,
            &user_of(&first.key),
            product,
            &first.key,
        )
        .await;
        assert_eq!(retry.status, StatusCode::CREATED, "{retry:?}");
        let id = retry.order.expect("an order id");
        stored_though_refused += usize::from(stored.contains(&id));
        orders_by_key.insert(&first.key, id);
    }
    let stored = probe.orders(product).await;
    let distinct: HashSet<&String> = orders_by_key.values().collect();
    assert_eq!(distinct.len(), orders_by_key.len(), "two keys, one order");
    assert_eq!(
        stored.len(),
        orders_by_key.len(),
        "one stored order per key ({tally:?})"
    );
    for (_, id) in orders_by_key {
        assert!(stored.iter().any(|o| o.0 == id), "order {id} not stored");
    }
    // The counts add up, and the server's live view is the stored one.
    let counts = probe.assert_consistent(product).await;
    assert_eq!(counts.reserved as usize, stored.len());
    assert_eq!(
        server.product(product).await["stock_reserved"],
        json!(stored.len())
    );
    stored_though_refused
}

/// A commit that the database runs but whose answer never comes back (a
/// failover, a half-dead link: the proxy strands every open connection) is
/// given up after `--commit-timeout`: its connection is closed, the shard takes
/// a new epoch and reloads, and orders are taken again over new connections.
/// The orders of the unanswered commits were refused yet stored; retried with
/// their keys, they come back as the orders they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_commit_is_given_up() {
    let Some(db) = TestDb::new(Backend::MySql).await else {
        return;
    };
    let (server, proxy, _) = server_behind_proxy(&db, &["--commit-timeout", "2s"]).await;
    let product = server.create_product(1_000_000, None).await;
    let load = Load::start(&server, product);
    load.wait_for_acks(ACKS_EACH_SIDE, RECOVERY_MAX).await;
    // A commit in flight when the answers stop: every shard's fence row is held
    // for a moment, so the next commit waits on it inside the database; the
    // strand comes while it waits, and then it is let through. It commits, and
    // its answer is lost.
    let probe = db.probe().await;
    let pool = probe.mysql();
    let mut fences = pool.begin().await.expect("a transaction");
    sqlx::query("SELECT shard FROM shard_epochs FOR UPDATE")
        .fetch_all(&mut *fences)
        .await
        .expect("hold the fences");
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.strand();
    fences.rollback().await.expect("let the commit through");
    load.wait_for_acks(load.acks() + ACKS_EACH_SIDE, RECOVERY_MAX)
        .await;
    let replies = load.stop().await;
    let stored_though_refused =
        nothing_lost_one_order_per_key(&server, &probe, product, &replies).await;
    assert!(
        stored_though_refused > 0,
        "no refused order was stored: the stranded commits did not reach the database"
    );
}

/// A read whose answer never comes back (the way back from the database lost
/// while it runs) is given up after `--query-timeout` with 503 `unavailable`,
/// and its connection closed rather than pooled; reads then go over new
/// connections, and the order is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_read_is_given_up() {
    let Some(db) = TestDb::new(Backend::MySql).await else {
        return;
    };
    let (server, proxy, _) = server_behind_proxy(&db, &["--query-timeout", "2s"]).await;
    let product = server.create_product(10, None).await;
    let buyer = token("buyer-1", false);
    let (status, placed) = server.order(&buyer, product, 1, None).await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    let path = format!("/v1/orders/{}", placed["id"].as_str().expect("order id"));

    // The read waits inside the database on a table lock; the proxy strands
    // its connection meanwhile, and then the lock is let go: the database
    // answers, and the answer is lost.
    let probe = db.probe().await;
    let pool = probe.mysql();
    let mut locker = pool.acquire().await.expect("a connection");
    sqlx::query("LOCK TABLES orders WRITE")
        .execute(&mut *locker)
        .await
        .expect("lock the orders");
    let read = server.request(Method::GET, &path, Some(&buyer), None, None);
    let strand_then_unlock = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.strand();
        sqlx::query("UNLOCK TABLES")
            .execute(&mut *locker)
            .await
            .expect("unlock");
    };
    let ((status, body), ()) = tokio::join!(read, strand_then_unlock);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "unavailable", "{body}");

    // Idle connections opened before the strand are stranded too: each read
    // that meets one is refused the same way and closes it.
    let deadline = Instant::now() + RECOVERY_MAX;
    loop {
        let (status, body) = server
            .request(Method::GET, &path, Some(&buyer), None, None)
            .await;
        if status == StatusCode::OK {
            assert_eq!(body["id"], placed["id"], "{body}");
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(Instant::now() < deadline, "reads never recovered: {body}");
    }
    let (status, body) = server
        .request(Method::GET, "/readyz", None, None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A query whose session is killed (as when the database restarts, or an
/// operator kills the session), a connection nobody accepts and one the server
/// refuses for its connection limit all mean the database is unavailable; a bad
/// query does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sessions_and_refused_connections_are_unavailable() {
    use flashstock::persistence::StoreError;

    let Some(db) = TestDb::new(Backend::MySql).await else {
        return;
    };
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .connect(&db.url)
        .await
        .expect("connect");
    let mut sleeper = pool.acquire().await.expect("a connection");
    let session: u32 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut *sleeper)
        .await
        .expect("its id");
    let sleeping = tokio::spawn(async move {
        sqlx::query("SELECT SLEEP(30)")
            .execute(&mut *sleeper)
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("KILL CONNECTION {session}")))
        .execute(&pool)
        .await
        .expect("kill");
    let killed = sleeping.await.unwrap().expect_err("the query was killed");
    let killed = StoreError::Database(killed);
    assert!(killed.is_unavailable(), "{killed:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!(
        "mysql://flashstock:flashstock@{}/x",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let refused = <sqlx::MySqlConnection as sqlx::Connection>::connect(&nobody)
        .await
        .expect_err("nothing listens there");
    let refused = StoreError::Database(refused);
    assert!(refused.is_unavailable(), "{refused:?}");

    // A user at its connection limit is refused by the server itself, with an
    // error number rather than a closed socket.
    let user = format!(
        "fs_limited_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'limited' WITH MAX_USER_CONNECTIONS 1"
    )))
    .execute(&pool)
    .await
    .expect("a limited user");
    // No database: the user may only connect.
    let mut limited_url = reqwest::Url::parse(&db.url).unwrap();
    limited_url.set_username(&user).unwrap();
    limited_url.set_password(Some("limited")).unwrap();
    limited_url.set_path("");
    let first = <sqlx::MySqlConnection as sqlx::Connection>::connect(limited_url.as_str())
        .await
        .expect("the first connection");
    let second = <sqlx::MySqlConnection as sqlx::Connection>::connect(limited_url.as_str())
        .await
        .expect_err("one connection at most");
    drop(first);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP USER '{user}'@'%'")))
        .execute(&pool)
        .await
        .expect("drop the user");
    let second = StoreError::Database(second);
    assert!(second.is_unavailable(), "{second:?}");

    let bad = sqlx::query("SELECT no_such_column FROM dual")
        .execute(&pool)
        .await
        .expect_err("a bad query");
    let bad = StoreError::Database(bad);
    assert!(!bad.is_unavailable(), "{bad:?}");
}
