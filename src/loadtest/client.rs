//! The load driver: `connections` keep-alive HTTP/1.1 connections, each sending
//! pre-serialised requests back to back and timing each reply. Requests are
//! built (tokens minted, JSON written) before the clock starts; per request the
//! driver only writes bytes, parses the reply's head with `httparse`, and
//! records into its thread's histogram: no allocation on the way unless a
//! reply carries a new error `code` or an id must be kept.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest reply head or body the driver accepts: far above any reply of the
/// API, small enough that a misbehaving server cannot exhaust memory.
const REPLY_BYTES_MAX: usize = 1 << 20;
/// Slowest latency the histograms hold; slower replies are clamped to it.
const LATENCY_MAX: Duration = Duration::from_secs(60);

/// Where requests go: a resolved `http://host:port` address.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("only http:// URLs are supported: {url}"))?;
        let host = rest.trim_end_matches('/').to_string();
        anyhow::ensure!(
            !host.contains('/'),
            "give the server's base URL, not a path: {url}"
        );
        let with_port = if host
            .rsplit(':')
            .next()
            .is_some_and(|p| p.parse::<u16>().is_ok())
            && !host.ends_with(']')
        {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{host} does not resolve"))?;
        Ok(Endpoint { addr, host })
    }

    /// One request, serialised.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Bytes {
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(token) = token {
            text.push_str("Authorization: Bearer ");
            text.push_str(token);
            text.push_str("\r\n");
        }
        match body {
            Some(body) => {
                text.push_str("Content-Type: application/json\r\n");
                text.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                text.push_str(body);
            }
            None => text.push_str("Content-Length: 0\r\n\r\n"),
        }
        Bytes::from(text)
    }
}

/// Which requests a run sends.
#[derive(Clone)]
pub enum Budget {
    /// Each request once (a drop: every user orders once).
    Each(Arc<Vec<Bytes>>),
    /// Cycle through the requests until the deadline.
    Until(Arc<Vec<Bytes>>, Instant),
}

impl Budget {
    fn next(&self, index: usize, now: Instant) -> Option<&Bytes> {
        match self {
            Budget::Each(requests) => requests.get(index),
            Budget::Until(requests, deadline) => {
                (now < *deadline).then(|| &requests[index % requests.len()])
            }
        }
    }
}

/// What a run saw.
pub struct Stats {
    pub latency_us: Histogram<u64>,
    /// Replies by status and problem `code` (empty for successes).
    pub replies: Vec<(u16, String, u64)>,
    /// Requests that got no reply (connection refused, reset, malformed reply).
    pub transport_errors: u64,
    /// Ids of 201 replies, when asked for.
    pub ids: Vec<Box<str>>,
    pub elapsed: Duration,
    /// CPU time (user and system) of the loader's threads, together.
    pub cpu: Duration,
    /// How many threads sent the requests.
    pub threads: usize,
}

impl Stats {
    pub(crate) fn new() -> Stats {
        Stats {
            latency_us: Histogram::new_with_bounds(1, LATENCY_MAX.as_micros() as u64, 3)
                .expect("valid histogram bounds"),
            replies: Vec::new(),
            transport_errors: 0,
            ids: Vec::new(),
            elapsed: Duration::ZERO,
            cpu: Duration::ZERO,
            threads: 0,
        }
    }

    fn count(&mut self, status: u16, code: &[u8]) {
        match self
            .replies
            .iter_mut()
            .find(|(s, c, _)| *s == status && c.as_bytes() == code)
        {
            Some(entry) => entry.2 += 1,
            None => self
                .replies
                .push((status, String::from_utf8_lossy(code).into_owned(), 1)),
        }
    }

    fn merge(&mut self, other: Stats) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
        for (status, code, n) in other.replies {
            match self
                .replies
                .iter_mut()
                .find(|(s, c, _)| *s == status && *c == code)
            {
                Some(entry) => entry.2 += n,
                None => self.replies.push((status, code, n)),
            }
        }
        self.transport_errors += other.transport_errors;
        self.ids.extend(other.ids);
        self.cpu += other.cpu;
        self.threads += other.threads;
    }

    pub fn requests(&self) -> u64 {
        self.replies.iter().map(|r| r.2).sum::<u64>() + self.transport_errors
    }

    /// Replies with this status.
    pub fn with_status(&self, status: u16) -> u64 {
        self.replies
            .iter()
            .filter(|r| r.0 == status)
            .map(|r| r.2)
            .sum()
    }

    /// Replies by name, as reports show them: `"201"`, `"409 out_of_stock"`,
    /// and `"transport_error"` for requests that got no reply.
    pub fn named_replies(&self) -> BTreeMap<String, u64> {
        self.named(|_| true)
    }

    /// The same, for what [`Stats::errors`] counts: 5xx replies and transport
    /// errors.
    pub fn named_errors(&self) -> BTreeMap<String, u64> {
        self.named(|status| status >= 500)
    }

    fn named(&self, keep: impl Fn(u16) -> bool) -> BTreeMap<String, u64> {
        let mut named = BTreeMap::new();
        for (status, code, n) in self.replies.iter().filter(|r| keep(r.0)) {
            let name = if code.is_empty() {
                status.to_string()
            } else {
                format!("{status} {code}")
            };
            *named.entry(name).or_insert(0) += n;
        }
        if self.transport_errors > 0 {
            named.insert("transport_error".into(), self.transport_errors);
        }
        named
    }

    /// Transport errors and 5xx replies.
    pub fn errors(&self) -> u64 {
        self.transport_errors
            + self
                .replies
                .iter()
                .filter(|r| r.0 >= 500)
                .map(|r| r.2)
                .sum::<u64>()
    }
}

/// How the kernel schedules the loader's threads (Linux; elsewhere, as the
/// system does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    /// `SCHED_BATCH`: the same share of the cores as any thread at the same
    /// nice, but a thread woken by a reply waits for the running thread's turn
    /// to end rather than preempting it. A server on the same machine is then
    /// not interrupted at every reply it sends, as it is not by clients on
    /// other machines.
    #[default]
    Batch,
    /// The kernel's usual policy (`SCHED_OTHER`): a woken loader thread may
    /// preempt the server thread that woke it.
    Normal,
}

/// The scheduling each loader thread takes as it starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scheduling {
    pub policy: Policy,
    /// The threads' nice value: 0 runs them at the caller's; a higher one
    /// (raising it needs no privilege) lets everything else run first.
    pub nice: i32,
}

impl Scheduling {
    /// Applies to the calling thread: on Linux each thread has its own policy
    /// and nice value.
    fn apply(self) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            if self.policy == Policy::Batch {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: `param` outlives the call, and pid 0 is this thread.
                if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // SAFETY: setpriority reads only its integer arguments.
            if self.nice != 0 && unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, self.nice) } != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The calling thread's CPU time so far (user and system); zero where the
/// system cannot tell.
fn thread_cpu() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}

/// Counts requests done, for a progress display.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn done(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How many threads `run` shares `connections` over: one per core, at most
/// one per connection.
fn threads_for(connections: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(connections)
}

/// Sends `budget` over `connections` connections; collects 201 ids if asked.
///
/// The connections are shared out over one thread per core, each running its
/// own single-threaded runtime, as `wrk` shares them over its event loops: a
/// reply wakes its connection on the thread that sent the request, and the
/// request counter and the statistics are the thread's own, so no cache line
/// moves between cores per request. Thread `t` of `T` sends requests
/// `t, t + T, t + 2T, ...` of the budget, so a drop still sends each once.
/// Each thread takes `scheduling` before its first request; a thread the
/// kernel refuses it sends nothing, and the run ends with that error.
pub async fn run(
    endpoint: &Endpoint,
    budget: Budget,
    connections: usize,
    collect_ids: bool,
    progress: Progress,
    scheduling: Scheduling,
) -> anyhow::Result<Stats> {
    assert!(connections > 0);
    let threads = threads_for(connections);
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let share = Share {
                addr: endpoint.addr,
                budget: budget.clone(),
                first: thread,
                stride: threads,
                collect_ids,
                progress: progress.clone(),
                sent: Cell::new(0),
                stats: RefCell::new(Stats::new()),
            };
            let connections = connections / threads + usize::from(thread < connections % threads);
            std::thread::Builder::new()
                .name(format!("loadtest-{thread}"))
                .spawn(move || {
                    scheduling.apply()?;
                    Ok(share.drive(connections))
                })
                .expect("the loader can start its threads")
        })
        .collect();
    // Joined off the caller's runtime, which keeps running (the progress bar).
    let shares = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|handle| handle.join().expect("a loader thread does not panic"))
            .collect::<Vec<std::io::Result<Stats>>>()
    })
    .await
    .expect("a loader thread does not panic");
    let mut total = Stats::new();
    for stats in shares {
        let stats =
            stats.with_context(|| format!("the loader's threads cannot take {scheduling:?}"));
        total.merge(stats?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// One thread's part of a run, shared by the thread's connections.
struct Share {
    addr: SocketAddr,
    budget: Budget,
    first: usize,
    stride: usize,
    collect_ids: bool,
    progress: Progress,
    /// Requests this thread has taken from the budget.
    sent: Cell<usize>,
    stats: RefCell<Stats>,
}

impl Share {
    /// Runs `connections` connections on this thread until the budget is spent.
    fn drive(self, connections: usize) -> Stats {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a single-threaded runtime builds");
        let share = Rc::new(self);
        let local = tokio::task::LocalSet::new();
        for _ in 0..connections {
            local.spawn_local(connection(share.clone()));
        }
        runtime.block_on(local);
        drop(runtime);
        let mut stats = Rc::into_inner(share)
            .expect("every connection has finished")
            .stats
            .into_inner();
        stats.cpu = thread_cpu();
        stats.threads = 1;
        stats
    }

    /// The next request this thread sends, if the budget has one left.
    fn next(&self, now: Instant) -> Option<&Bytes> {
        let k = self.sent.get();
        self.sent.set(k + 1);
        self.budget.next(self.first + k * self.stride, now)
    }
}

async fn connection(share: Rc<Share>) {
    let mut stream: Option<TcpStream> = None;
    let mut buffer = BytesMut::with_capacity(8 * 1024);
    /// Requests counted locally before the shared progress counter is touched.
    const PROGRESS_STRIDE: u64 = 32;
    let mut unreported = 0u64;
    // One clock reading a request: the time a reply arrived is also when the
    // next request is sent and when the deadline is checked.
    let mut now = Instant::now();
    while let Some(request) = share.next(now) {
        if stream.is_none() {
            match TcpStream::connect(share.addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    buffer.clear();
                    stream = Some(s);
                    now = Instant::now();
                }
                Err(_) => {
                    share.stats.borrow_mut().transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    now = Instant::now();
                    continue;
                }
            }
        }
        let socket = stream.as_mut().expect("connected above");
        let sent_at = now;
        let reply = exchange(socket, request, &mut buffer).await;
        now = Instant::now();
        let mut stats = share.stats.borrow_mut();
        match reply {
            Ok((status, body)) => {
                let micros = now.duration_since(sent_at).as_micros() as u64;
                stats
                    .latency_us
                    .saturating_record(micros.clamp(1, LATENCY_MAX.as_micros() as u64));
                let code = if status >= 400 {
                    json_string_field(&body, b"\"code\":\"")
                } else {
                    &[][..]
                };
                stats.count(status, code);
                if share.collect_ids
                    && status == 201
                    && let Some(id) =
                        std::str::from_utf8(json_string_field(&body, b"\"id\":\"")).ok()
                {
                    stats.ids.push(id.into());
                }
            }
            Err(_) => {
                stats.transport_errors += 1;
                stream = None;
            }
        }
        unreported += 1;
        if unreported == PROGRESS_STRIDE {
            share.progress.0.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
    }
    share.progress.0.fetch_add(unreported, Ordering::Relaxed);
}

/// Writes one request and reads its reply; returns the status and body.
async fn exchange(
    socket: &mut TcpStream,
    request: &[u8],
    buffer: &mut BytesMut,
) -> std::io::Result<(u16, Bytes)> {
    socket.write_all(request).await?;
    loop {
        if let Some((status, head, body_len)) = parse_head(buffer)? {
            while buffer.len() < head + body_len {
                read_more(socket, buffer).await?;
            }
            buffer.advance(head);
            let body = buffer.split_to(body_len).freeze();
            return Ok((status, body));
        }
        read_more(socket, buffer).await?;
    }
}

async fn read_more(socket: &mut TcpStream, buffer: &mut BytesMut) -> std::io::Result<()> {
    if buffer.len() >= REPLY_BYTES_MAX {
        return Err(std::io::Error::other("reply too large"));
    }
    buffer.reserve(8 * 1024);
    if socket.read_buf(buffer).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The status, head length and body length of a complete reply head.
fn parse_head(buffer: &[u8]) -> std::io::Result<Option<(u16, usize, usize)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut reply = httparse::Response::new(&mut headers);
    let head = match reply.parse(buffer) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let length = reply
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or_else(|| std::io::Error::other("reply without Content-Length"))?;
    if length > REPLY_BYTES_MAX {
        return Err(std::io::Error::other("reply too large"));
    }
    Ok(Some((reply.code.unwrap_or(0), head, length)))
}

/// The value of a JSON string field found by its `"name":"` prefix (compact
/// JSON, as the API writes it), or empty.
fn json_string_field<'a>(body: &'a [u8], prefix: &[u8]) -> &'a [u8] {
    let Some(start) = body
        .windows(prefix.len())
        .position(|w| w == prefix)
        .map(|p| p + prefix.len())
    else {
        return &[];
    };
    let end = body[start..]
        .iter()
        .position(|b| *b == b'"')
        .map_or(body.len(), |p| start + p);
    &body[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads_and_fields() {
        let reply = b"HTTP/1.1 409 Conflict\r\ncontent-length: 20\r\n\r\n{\"code\":\"sold_out\"}";
        assert_eq!(parse_head(reply).unwrap(), Some((409, 45, 20)));
        assert_eq!(parse_head(&reply[..10]).unwrap(), None);
        assert_eq!(json_string_field(&reply[45..], b"\"code\":\""), b"sold_out");
        assert_eq!(json_string_field(b"{}", b"\"id\":\""), b"");
    }

    #[test]
    fn names_replies_and_errors() {
        let mut stats = Stats::new();
        stats.replies = vec![
            (201, String::new(), 5),
            (409, "out_of_stock".into(), 3),
            (503, "unavailable".into(), 2),
            (500, String::new(), 1),
        ];
        stats.transport_errors = 4;
        let named = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(name, n)| (name.to_string(), *n))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(
            stats.named_replies(),
            named(&[
                ("201", 5),
                ("409 out_of_stock", 3),
                ("500", 1),
                ("503 unavailable", 2),
                ("transport_error", 4)
            ])
        );
        assert_eq!(
            stats.named_errors(),
            named(&[("500", 1), ("503 unavailable", 2), ("transport_error", 4)])
        );
        assert_eq!(stats.errors(), 7);
        stats.transport_errors = 0;
        stats.replies.truncate(2);
        assert!(stats.named_errors().is_empty());
    }

    /// Held by each test that starts loader threads, so that one test's
    /// threads are not taken for another's.
    static LOADER_THREADS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// A drop sends every request of its budget once, whatever the threads and
    /// connections, over connections kept alive (never more than asked for),
    /// and `run` counts each reply and keeps each id.
    #[tokio::test]
    async fn each_request_is_sent_once() {
        let _alone = LOADER_THREADS.lock().await;
        use std::collections::HashSet;
        use std::sync::Mutex;
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let peers = Arc::new(Mutex::new(HashSet::<SocketAddr>::new()));
        let app = axum::Router::new().route(
            "/v1/orders",
            axum::routing::post({
                let (seen, peers) = (seen.clone(), peers.clone());
                move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
                      body: String| async move {
                    peers.lock().unwrap().insert(peer);
                    seen.lock().unwrap().push(body.clone());
                    (
                        axum::http::StatusCode::CREATED,
                        format!("{{\"id\":\"{body}\"}}"),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(listener, app).await.unwrap()
        });
        let endpoint = Endpoint::parse(&url).unwrap();
        for (requests, connections) in [(1, 1), (7, 3), (1000, 5), (1001, 64)] {
            seen.lock().unwrap().clear();
            peers.lock().unwrap().clear();
            let budget = Budget::Each(Arc::new(
                (0..requests)
                    .map(|i| endpoint.request("POST", "/v1/orders", None, Some(&format!("u{i}"))))
                    .collect(),
            ));
            let progress = Progress::default();
            let scheduling = Scheduling::default();
            let stats = run(
                &endpoint,
                budget,
                connections,
                true,
                progress.clone(),
                scheduling,
            )
            .await
            .unwrap();
            let mut bodies = std::mem::take(&mut *seen.lock().unwrap());
            bodies.sort();
            let mut expected: Vec<_> = (0..requests).map(|i| format!("u{i}")).collect();
            expected.sort();
            assert_eq!(bodies, expected, "{requests} requests over {connections}");
            let opened = peers.lock().unwrap().len();
            assert!(
                (1..=connections).contains(&opened),
                "{requests} requests over {connections} connections opened {opened}"
            );
            assert_eq!(stats.with_status(201), requests as u64);
            assert_eq!(stats.errors(), 0);
            assert_eq!(stats.latency_us.len(), requests as u64);
            assert_eq!(progress.done(), requests as u64);
            let mut ids: Vec<String> = stats.ids.iter().map(|id| id.to_string()).collect();
            ids.sort();
            assert_eq!(ids, expected);
        }
    }

    /// Policy and nice of this process's threads named `loadtest-*`, from
    /// `/proc` (fields 41 and 19 of a thread's `stat`). A thread that ends
    /// while it is read is left out.
    #[cfg(target_os = "linux")]
    fn loader_threads() -> Vec<(u32, i32)> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("loadtest-") {
                continue;
            }
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            // The fields after the command, which is in parentheses.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .collect();
            found.push((fields[38].parse().unwrap(), fields[16].parse().unwrap()));
        }
        found
    }

    /// Every loader thread takes the scheduling it is given before its first
    /// request, and the caller's thread keeps its own.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn loader_threads_take_their_scheduling() {
        let _alone = LOADER_THREADS.lock().await;
        use std::sync::Mutex;
        use std::sync::atomic::AtomicUsize;
        // Each connection's first request waits at a barrier: when all have
        // come, every loader thread has sent, so has taken its scheduling,
        // and none has ended; the last to come reads them all then.
        const CONNECTIONS: usize = 4;
        let firsts = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
        let seen = Arc::new(Mutex::new(Vec::<(u32, i32)>::new()));
        let app = axum::Router::new().route(
            "/",
            axum::routing::get({
                let (firsts, barrier, seen) = (firsts.clone(), barrier.clone(), seen.clone());
                move || async move {
                    if firsts.fetch_add(1, Ordering::SeqCst) < CONNECTIONS
                        && barrier.wait().await.is_leader()
                    {
                        *seen.lock().unwrap() = loader_threads();
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let endpoint = Endpoint::parse(&url).unwrap();
        let batch = libc::SCHED_BATCH as u32;
        let other = libc::SCHED_OTHER as u32;
        for (scheduling, expected) in [
            (Scheduling::default(), (batch, 0)),
            (
                Scheduling {
                    policy: Policy::Batch,
                    nice: 3,
                },
                (batch, 3),
            ),
            (
                Scheduling {
                    policy: Policy::Normal,
                    nice: 0,
                },
                (other, 0),
            ),
            (
                Scheduling {
                    policy: Policy::Normal,
                    nice: 5,
                },
                (other, 5),
            ),
        ] {
            // No thread of an earlier run may be read as one of this run's.
            let gone = Instant::now() + Duration::from_secs(5);
            while !loader_threads().is_empty() {
                assert!(Instant::now() < gone, "the loader's threads outlive a run");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            firsts.store(0, Ordering::SeqCst);
            let request = endpoint.request("GET", "/", None, None);
            let budget = Budget::Each(Arc::new(vec![request; 64]));
            let stats = run(
                &endpoint,
                budget,
                CONNECTIONS,
                false,
                Progress::default(),
                scheduling,
            )
            .await
            .unwrap();
            assert_eq!(stats.with_status(200), 64);
            let seen = std::mem::take(&mut *seen.lock().unwrap());
            assert_eq!(
                seen.len(),
                threads_for(CONNECTIONS),
                "every loader thread is read once: {seen:?}"
            );
            assert!(
                seen.iter().all(|&s| s == expected),
                "{scheduling:?}: {seen:?}"
            );
        }
        // SAFETY: plain calls about this thread.
        let (policy, nice) = unsafe {
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, 0),
            )
        };
        assert_eq!(
            (policy, nice),
            (libc::SCHED_OTHER, 0),
            "the caller's thread is its own"
        );
    }

    #[test]
    fn endpoints_need_http_base_urls() {
        let e = Endpoint::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!(e.addr.port(), 8080);
        assert!(Endpoint::parse("https://127.0.0.1:8080").is_err());
        assert!(Endpoint::parse("http://127.0.0.1:8080/v1/orders").is_err());
        let request = e.request("POST", "/v1/orders", Some("t"), Some("{}"));
        assert!(request.starts_with(b"POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(request.ends_with(b"Content-Length: 2\r\n\r\n{}"));
    }
}
