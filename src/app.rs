//! Wiring: opens the store, fences the shards this node owns, starts a writer per
//! shard and the actor system (`Node`), serves HTTP in front of it, and on
//! SIGTERM/SIGINT shuts down in order.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::actors::{AckMode, ActorSystem, Engine, EngineConfig, Registry};
use crate::cluster::{LocalOwnership, Ownership};
use crate::config::{DEVELOPMENT_JWT_SECRET, Settings};
use crate::domain::Timing;
use crate::http::{AppState, Auth, Shared};
use crate::persistence::writer::{Committer, ShardWriter, WriterLimits};
use crate::persistence::{self, Backend, SharedStore};

/// How often actors run their periodic checks (expiry, idleness).
const ACTOR_TICK_INTERVAL: Duration = Duration::from_millis(100);

/// Transactions in flight at once against MariaDB (across shards): its group
/// commit lets them share fsyncs, and a few keep it busy without queueing.
const COMMIT_WORKERS_SERVER_DATABASE: usize = 4;

/// Tasks an arbiter runs between looks at its sockets when acknowledgements are
/// durable (with memory acknowledgements, tokio's default). Then every reply
/// waits for a commit, and MariaDB's answer to a commit sits in the connection's
/// socket until the arbiter next looks: with tokio's default of 61 tasks, about a millisecond of HTTP work on a
/// busy arbiter, in a batch cycle of two or three. Every 16 tasks, `loadtest hot`
/// in alternating pairs: MariaDB 3-4% more orders/s (seven pairs, each won);
/// SQLite, whose answer comes from its worker thread, 18% (three pairs; why it
/// gains more was not traced); 4 and 8 tasks measured the same as 16. With memory
/// acknowledgements nothing waits for a commit, and the default measured as well
/// or slightly better.
const EVENT_INTERVAL_DURABLE: u32 = 16;

/// How often the node looks for passivated products with orders falling due.
const TIMER_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Opens the database and runs pending migrations; returns the store and the
/// shard count stored in it.
pub async fn open_store(settings: &Settings) -> anyhow::Result<(SharedStore, u32)> {
    let store = persistence::connect(
        &settings.database_url,
        settings.db_connections_max,
        persistence::Timeouts {
            commit: settings.commit_timeout,
            query: settings.query_timeout,
        },
    )
    .await
    .with_context(|| format!("opening {}", redact(&settings.database_url)))?;
    store.migrate().await.context("running migrations")?;
    let shards = store
        .shard_count(settings.shards)
        .await
        .context("reading the shard count")?;
    Ok((store, shards))
}

/// A running node without its HTTP listener: store, fenced shards, writers and
/// actors. `serve` puts HTTP in front of it; benches drive its `Engine` directly.
pub struct Node {
    pub engine: Arc<Engine>,
    pub store: SharedStore,
    sweeper: JoinHandle<()>,
    writers: Vec<Arc<ShardWriter>>,
    writer_tasks: Vec<oneshot::Receiver<()>>,
    actor_system: ActorSystem,
}

impl Node {
    pub async fn start(settings: &Settings) -> anyhow::Result<Node> {
        if settings.redis_url.is_some() {
            anyhow::bail!("cluster mode (redis_url) is not available in this version");
        }
        let (store, shard_count) = open_store(settings).await?;
        let node_id = settings.node_id();
        let ownership: Arc<dyn Ownership> = Arc::new(LocalOwnership::new(&node_id, shard_count));
        let shards = ownership.owned_shards();
        let epochs = store
            .acquire_shards(&shards, &node_id)
            .await
            .context("fencing the shards")?;

        let limits = WriterLimits {
            batch_rows_max: settings.batch_rows_max as usize,
            queue_rows_max: (settings.queue_rows_max as usize)
                .max(settings.batch_rows_max as usize),
        };
        let writers: Vec<Arc<ShardWriter>> = shards
            .iter()
            .zip(&epochs)
            .map(|(shard, epoch)| ShardWriter::new(*shard, *epoch, limits))
            .collect();
        let commit_workers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::MySql => COMMIT_WORKERS_SERVER_DATABASE,
        };
        // Writers and committers run on the arbiters beside the actors that feed
        // them: a commit then wakes its waiting requests without crossing threads.
        let event_interval = (settings.ack == AckMode::Durable).then_some(EVENT_INTERVAL_DURABLE);
        let actor_system = ActorSystem::start(settings.arbiter_count(), event_interval);
        let (committer, commit_tasks) =
            Committer::new(store.clone(), commit_workers, limits.batch_rows_max);
        // A committer task ends when the last writer (holding the committer) has.
        for (index, task) in commit_tasks.into_iter().enumerate() {
            drop(actor_system.spawn_on(index, task));
        }
        let writer_tasks = writers
            .iter()
            .map(|w| {
                let run = w
                    .clone()
                    .run(committer.clone(), store.clone(), node_id.clone());
                actor_system.spawn_on(w.shard() as usize, run)
            })
            .collect();
        drop(committer);

        let config = Arc::new(EngineConfig {
            ack: settings.ack,
            timing: Timing {
                reservation_ttl: settings.reservation_ttl,
                shipping_delay: settings.shipping_delay,
                delivery_delay: settings.delivery_delay,
            },
            passivate_after: settings.passivate_after,
            tick_interval: ACTOR_TICK_INTERVAL,
            mailbox_capacity: settings.mailbox_capacity,
            commit_timeout: settings.commit_timeout,
        });
        let registry = Registry::new(
            store.clone(),
            ownership,
            writers.clone(),
            actor_system.arbiters().to_vec(),
            config.clone(),
        );
        let sweeper = tokio::spawn(registry.clone().sweep_timers(TIMER_SWEEP_INTERVAL));
        let engine = Arc::new(Engine::new(
            registry,
            store.clone(),
            config,
            settings.payment_success_rate,
        ));
        tracing::info!(
            database = %redact(&settings.database_url),
            shards = shard_count,
            ack = ?settings.ack,
            "node started"
        );
        Ok(Node {
            engine,
            sweeper,
            store,
            writers,
            writer_tasks,
            actor_system,
        })
    }

    pub fn arbiter_count(&self) -> usize {
        self.actor_system.arbiters().len()
    }

    /// Runs `task` on arbiter `index % arbiters`; see `ActorSystem::spawn_on`.
    pub fn spawn_on<F>(&self, index: usize, task: F) -> oneshot::Receiver<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.actor_system.spawn_on(index, task)
    }

    /// Commits everything queued, then stops the writers and the actors.
    pub async fn shutdown(self) {
        tracing::info!("flushing write-behind queues");
        self.sweeper.abort();
        for writer in &self.writers {
            writer.close();
        }
        for task in self.writer_tasks {
            let _ = task.await;
        }
        self.actor_system.stop();
    }
}

/// Serves until SIGTERM or SIGINT, then shuts down cleanly: stop accepting,
/// finish in-flight requests, flush every writer, stop the actors.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    if settings.jwt_secret.is_none() {
        tracing::warn!(
            "no jwt_secret configured: using the development secret {DEVELOPMENT_JWT_SECRET:?}; \
             set FLASHSTOCK_JWT_SECRET in production"
        );
    }
    let metrics = crate::metrics::install();
    let node = Node::start(&settings).await?;
    let upkeep = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                metrics.run_upkeep();
            }
        })
    };
    let state = AppState::new(Shared {
        engine: node.engine.clone(),
        auth: Auth::new(settings.jwt_secret()),
        settings: settings.clone(),
        metrics,
        request_metrics: Default::default(),
    });
    let listener =
        listen(settings.listen).with_context(|| format!("listening on {}", settings.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, arbiters = node.arbiter_count(), "flashstock serving");
    // Tests and scripts wait for this line to know the port.
    println!("flashstock listening on http://{address}");

    // Every arbiter accepts on the same socket and serves its connections itself.
    let (stop, stopped) = watch::channel(false);
    let (ended_tx, mut ended) = mpsc::channel::<()>(1);
    let mut servers = Vec::new();
    for index in 0..node.arbiter_count() {
        let listener = listener.try_clone().context("sharing the listener")?;
        let app = tower::make::Shared::new(crate::http::Api::new(state.clone()));
        let mut stopped = stopped.clone();
        let ended_tx = ended_tx.clone();
        servers.push(node.spawn_on(index, async move {
            let served = match TcpListener::from_std(listener) {
                Ok(listener) => axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    })
                    .await
                    .context("serving HTTP"),
                Err(error) => Err(error).context("registering the listener"),
            };
            if let Err(error) = served {
                tracing::error!(error = format!("{error:#}"), "an HTTP server stopped");
            }
            // Only the first ending is news; later ones must not wait to say so.
            let _ = ended_tx.try_send(());
        }));
    }
    drop(ended_tx);
    let failed = tokio::select! {
        _ = shutdown_signal() => false,
        _ = ended.recv() => {
            tracing::error!("an HTTP server ended on its own; shutting down");
            true
        }
    };
    stop.send_replace(true);
    for server in servers {
        let _ = server.await;
    }

    node.shutdown().await;
    upkeep.abort();
    if failed {
        anyhow::bail!("an HTTP server stopped; the node flushed its writers and stopped");
    }
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Connections the kernel completes and queues before the server accepts them.
/// A drop opens thousands at once; past the queue the kernel drops the SYN and
/// the client tries again only after a second (std's default queue is 128). The
/// kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: i32 = 4096;

/// A non-blocking listening socket on `address` with a queue of
/// [`LISTEN_BACKLOG`] connections.
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // As std does: a restarted server may bind while old connections linger.
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
    tracing::info!("signal received: no longer accepting connections");
}

/// The URL with any password replaced, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A burst of connections larger than std's queue of 128 all complete while
    /// the server is not accepting: none waits for a retried SYN.
    #[test]
    fn listener_queues_a_burst_of_connections() {
        let listener = super::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = listener.local_addr().unwrap();
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        // The kernel queues one more than the backlog; stay well under the
        // process's file limit.
        let burst = 400.min(somaxconn);
        assert!(
            burst > 128,
            "net.core.somaxconn {somaxconn} is too small to show this"
        );
        let clients: Vec<_> = (0..burst)
            .map(|n| {
                std::net::TcpStream::connect_timeout(&address, Duration::from_millis(900))
                    .unwrap_or_else(|e| panic!("connection {n} of {burst} not queued: {e}"))
            })
            .collect();
        assert_eq!(clients.len(), burst);
        // Accepting still works, and the socket does not block.
        let (first, _) = listener.accept().unwrap();
        drop(first);
        drop(clients);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("mysql://u:secret@127.0.0.1:3306/db"),
            "mysql://u:***@127.0.0.1:3306/db"
        );
        assert_eq!(
            super::redact("sqlite://flashstock.db"),
            "sqlite://flashstock.db"
        );
    }
}
