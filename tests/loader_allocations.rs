//! The loader allocates nothing per request: every allocation of a run is made
//! once (its threads, runtimes, connections, buffers and histograms), so a run
//! of twenty times the requests allocates no more than a short one.
//!
//! A global allocator counts the allocations made on the loader's threads; the
//! test server's threads and the test's own are marked as not counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flashstock::loadtest::client::{Budget, Endpoint, Progress, Scheduling, run};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread's allocations count: true for every thread but
    /// those that mark themselves (the server's and the test's).
    static COUNTED: Cell<bool> = const { Cell::new(true) };
}

fn count() {
    // During a thread's teardown its locals are gone: nothing to count then.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

fn not_counted() {
    COUNTED.with(|counted| counted.set(false));
}

// SAFETY: every call is passed to `System` unchanged; counting touches only an
// atomic and a `const` thread local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations the loader's threads made to send `requests` requests over
/// `connections` connections, each answered `201` with an order's JSON.
async fn allocations_of(endpoint: &Endpoint, requests: usize, connections: usize) -> u64 {
    let body = r#"{"product_id":1,"quantity":1}"#;
    let budget = Budget::Each(Arc::new(
        (0..requests)
            .map(|_| endpoint.request("POST", "/v1/orders", Some("t0k3n"), Some(body)))
            .collect(),
    ));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let stats = run(
        endpoint,
        budget,
        connections,
        false,
        Progress::default(),
        Scheduling::default(),
    )
    .await
    .expect("the run completes");
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(stats.with_status(201), requests as u64);
    assert_eq!(stats.errors(), 0);
    allocations
}

#[test]
fn the_loader_allocates_nothing_per_request() {
    not_counted();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(not_counted)
        .build()
        .unwrap();
    runtime.block_on(async {
        let app = axum::Router::new().route(
            "/v1/orders",
            axum::routing::post(|| async {
                (
                    axum::http::StatusCode::CREATED,
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    r#"{"id":"01HF7YAT000000000000000000","status":"PENDING_PAYMENT"}"#,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let endpoint = Endpoint::parse(&url).unwrap();

        // The first run pays what is made once per process (the thread
        // locals, the kernel's first connections): only the later ones compare.
        allocations_of(&endpoint, 100, 8).await;
        let short = allocations_of(&endpoint, 1_000, 8).await;
        let long = allocations_of(&endpoint, 20_000, 8).await;
        assert!(short > 0, "the counter sees the loader's threads");
        // 19,000 more requests: a single allocation per request would add
        // 19,000; allow a few for what the kernel or the runtime does unevenly.
        assert!(
            long <= short + 64,
            "1,000 requests made {short} allocations and 20,000 made {long}: \
             about {:.2} per extra request",
            long.saturating_sub(short) as f64 / 19_000.0
        );
    });
}
