//! Write-behind: one writer per shard commits the mutations that the shard's actors
//! decided, in batches (group commit), one transaction in flight at a time, so
//! the database always holds a prefix of the shard's history.
//!
//! An actor decides in memory and `submit`s its mutations; it gets a `Ticket` for
//! the batch they will be committed in, and moves on. Whoever must not answer
//! before the change is durable awaits `Ticket::committed`. Every mutation
//! submitted while a batch is open goes into that batch, so one transaction
//! acknowledges all of them.
//!
//! Failure: a batch whose commit fails has an unknown outcome, and every mutation
//! queued behind it was decided on top of it. The writer fails that batch and all
//! queued ones, bumps its `generation` (so every actor of the shard, holding the
//! old one, stops at its next submit and is re-activated from the database), then
//! re-fences the shard (a new epoch, committed after any transaction of ours that
//! might still be in flight) before it reports ready again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::{CommitError, Mutation, ShardBatch, SharedStore};
use crate::metrics as m;

/// Bounds of one writer, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct WriterLimits {
    /// Mutations in one transaction at most.
    pub batch_rows_max: usize,
    /// Mutations queued (open and sealed batches) at most; past it actors refuse
    /// new work with 503 instead of letting memory grow.
    pub queue_rows_max: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchOutcome {
    Committed,
    Failed,
}

/// One batch's outcome, set once by the writer.
#[derive(Debug)]
struct Batch {
    outcome: watch::Sender<Option<BatchOutcome>>,
}

impl Batch {
    fn new() -> Arc<Batch> {
        Arc::new(Batch {
            outcome: watch::Sender::new(None),
        })
    }

    fn settle(&self, outcome: BatchOutcome) {
        self.outcome.send_replace(Some(outcome));
    }
}

/// A claim on the batch that holds some submitted mutations.
#[derive(Clone, Debug)]
pub struct Ticket(Arc<Batch>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the batch could not be committed")]
pub struct WriteFailed;

impl Ticket {
    /// Resolves when the batch is committed, or has failed.
    pub async fn committed(&self) -> Result<(), WriteFailed> {
        let mut outcome = self.0.outcome.subscribe();
        let settled = outcome
            .wait_for(Option::is_some)
            .await
            .map_err(|_| WriteFailed)?;
        match *settled {
            Some(BatchOutcome::Committed) => Ok(()),
            _ => Err(WriteFailed),
        }
    }

    /// Whether the batch has been committed or failed (not in flight).
    pub fn is_settled(&self) -> bool {
        self.0.outcome.borrow().is_some()
    }

    /// A ticket that is already committed: for answers that changed nothing.
    pub fn settled() -> Ticket {
        let batch = Batch::new();
        batch.settle(BatchOutcome::Committed);
        Ticket(batch)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is at its bound: refuse and let the client retry.
    #[error("the write-behind queue is full")]
    Full,
    /// The caller's state predates a failed batch: it must reload.
    #[error("the shard's state was reset by a failed write")]
    Stale,
    /// The writer is shutting down.
    #[error("the writer is closed")]
    Closed,
}

struct Queue {
    generation: u64,
    epoch: u64,
    /// Batches full to `batch_rows_max`, waiting behind the one in flight.
    sealed: VecDeque<(Arc<Batch>, Vec<Mutation>)>,
    /// The batch that new mutations join.
    open: (Arc<Batch>, Vec<Mutation>),
    queued_rows: usize,
    /// `queued_rows` as the shard's queue-depth gauge, looked up once; set with
    /// it (`set_queued_rows`), so it falls back to 0 as batches are taken.
    queued_rows_gauge: metrics::Gauge,
    closing: bool,
}

impl Queue {
    fn take_next(&mut self) -> Option<(Arc<Batch>, Vec<Mutation>)> {
        let next = match self.sealed.pop_front() {
            Some(sealed) => sealed,
            None if self.open.1.is_empty() => return None,
            None => std::mem::replace(&mut self.open, (Batch::new(), Vec::new())),
        };
        self.set_queued_rows(self.queued_rows - next.1.len());
        Some(next)
    }

    /// The one way `queued_rows` changes, so that its gauge always agrees.
    fn set_queued_rows(&mut self, rows: usize) {
        self.queued_rows = rows;
        self.queued_rows_gauge.set(rows as f64);
    }

    /// Fails every queued batch; returns how many mutations were dropped.
    fn fail_all(&mut self) -> usize {
        let mut dropped = 0;
        while let Some((batch, mutations)) = self.take_next() {
            dropped += mutations.len();
            batch.settle(BatchOutcome::Failed);
        }
        // The open batch may have tickets but no rows (all answers replayed).
        let open = std::mem::replace(&mut self.open, (Batch::new(), Vec::new()));
        open.0.settle(BatchOutcome::Failed);
        dropped
    }
}

pub struct ShardWriter {
    shard: u32,
    limits: WriterLimits,
    queue: Mutex<Queue>,
    /// Wakes the writer task when the first mutation of a batch arrives.
    wake: Notify,
    /// False while the writer re-fences after a failure; activation waits for it.
    ready: watch::Sender<bool>,
}

impl ShardWriter {
    pub fn new(shard: u32, epoch: u64, limits: WriterLimits) -> Arc<ShardWriter> {
        assert!(limits.batch_rows_max > 0 && limits.queue_rows_max >= limits.batch_rows_max);
        Arc::new(ShardWriter {
            shard,
            limits,
            queue: Mutex::new(Queue {
                generation: 0,
                epoch,
                sealed: VecDeque::new(),
                open: (Batch::new(), Vec::new()),
                queued_rows: 0,
                queued_rows_gauge: metrics::gauge!(m::WRITER_QUEUE_ROWS, "shard" => shard.to_string()),
                closing: false,
            }),
            wake: Notify::new(),
            ready: watch::Sender::new(true),
        })
    }

    pub fn shard(&self) -> u32 {
        self.shard
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .expect("the writer queue lock is never poisoned")
    }

    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Whether an actor of `generation` may decide new work now. All actors of a
    /// shard run on one thread, so between this check and their `submit` only the
    /// writer touches the queue, and it only shortens it.
    pub fn admit(&self, generation: u64) -> Result<(), SubmitError> {
        let queue = self.lock();
        if queue.closing {
            Err(SubmitError::Closed)
        } else if queue.generation != generation {
            Err(SubmitError::Stale)
        } else if queue.queued_rows >= self.limits.queue_rows_max {
            Err(SubmitError::Full)
        } else {
            Ok(())
        }
    }

    /// Queues mutations decided by an actor of `generation`. Never refuses for
    /// size: callers check `admit` before deciding, so the bound is exceeded by at
    /// most one decision's mutations.
    pub fn submit(
        &self,
        generation: u64,
        mutations: impl IntoIterator<Item = Mutation>,
    ) -> Result<Ticket, SubmitError> {
        let mut queue = self.lock();
        if queue.generation != generation {
            return Err(SubmitError::Stale);
        }
        if queue.closing {
            return Err(SubmitError::Closed);
        }
        let was_empty = queue.open.1.is_empty() && queue.sealed.is_empty();
        let before = queue.open.1.len();
        queue.open.1.extend(mutations);
        let added = queue.open.1.len() - before;
        let rows = queue.queued_rows + added;
        queue.set_queued_rows(rows);
        let ticket = Ticket(queue.open.0.clone());
        if queue.open.1.len() >= self.limits.batch_rows_max {
            let full = std::mem::replace(&mut queue.open, (Batch::new(), Vec::new()));
            queue.sealed.push_back(full);
        }
        drop(queue);
        if was_empty && added > 0 {
            self.wake.notify_one();
        }
        Ok(ticket)
    }

    /// A ticket for the batch now open: settled after everything submitted so
    /// far is committed (batches commit in order).
    pub fn barrier(&self) -> Ticket {
        let queue = self.lock();
        if queue.open.1.is_empty() && queue.sealed.is_empty() {
            return Ticket::settled();
        }
        Ticket(queue.open.0.clone())
    }

    /// Taking work: not recovering from a failure and not closing.
    pub fn is_serving(&self) -> bool {
        *self.ready.borrow() && !self.lock().closing
    }

    /// Waits until the writer is not recovering from a failure.
    pub async fn ready(&self) {
        let mut ready = self.ready.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Stops taking mutations; the task commits what is queued and ends.
    pub fn close(&self) {
        self.lock().closing = true;
        self.wake.notify_one();
    }

    /// The writer task: commit batches (through the committer) until closed and
    /// drained.
    pub async fn run(
        self: Arc<Self>,
        committer: Arc<Committer>,
        store: SharedStore,
        node_id: String,
    ) {
        loop {
            let next = {
                let mut queue = self.lock();
                match queue.take_next() {
                    Some((batch, mutations)) => Some((batch, mutations, queue.epoch)),
                    None if queue.closing => {
                        queue.open.0.settle(BatchOutcome::Committed);
                        return;
                    }
                    None => None,
                }
            };
            let Some((batch, mutations, epoch)) = next else {
                self.wake.notified().await;
                continue;
            };
            let rows = mutations.len();
            let result = committer.commit(self.shard, epoch, mutations).await;
            match result {
                Ok(()) => {
                    metrics::counter!(m::WRITER_BATCHES_TOTAL, "result" => "committed")
                        .increment(1);
                    batch.settle(BatchOutcome::Committed);
                }
                Err(error) => {
                    metrics::counter!(m::WRITER_BATCHES_TOTAL, "result" => "failed").increment(1);
                    batch.settle(BatchOutcome::Failed);
                    let dropped = {
                        let mut queue = self.lock();
                        queue.generation += 1;
                        self.ready.send_replace(false);
                        queue.fail_all()
                    };
                    tracing::error!(
                        shard = self.shard,
                        rows,
                        dropped,
                        error = %error,
                        "write-behind batch failed; the shard's actors reload from the database"
                    );
                    if matches!(*error, CommitError::Fenced { .. }) {
                        tracing::warn!(shard = self.shard, "shard fenced by a newer epoch");
                    }
                    if !self.refence(&store, &node_id).await {
                        return;
                    }
                }
            }
        }
    }

    /// Takes a new epoch for the shard, retrying until the database answers or the
    /// writer is closed. Returns false if closed first.
    async fn refence(&self, store: &SharedStore, node_id: &str) -> bool {
        let mut backoff = Duration::from_millis(50);
        loop {
            match store.acquire_shards(&[self.shard], node_id).await {
                Ok(epochs) => {
                    let mut queue = self.lock();
                    queue.epoch = epochs[0];
                    drop(queue);
                    self.ready.send_replace(true);
                    tracing::info!(shard = self.shard, epoch = epochs[0], "shard re-fenced");
                    return true;
                }
                Err(error) => {
                    if self.lock().closing {
                        self.lock().fail_all();
                        return false;
                    }
                    tracing::warn!(shard = self.shard, error = %error, "re-fencing failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Shard batches waiting for the database at most (one per shard at a time, so
/// this bounds nothing in practice but is a bound).
const COMMIT_JOBS_MAX: usize = 4_096;

/// Hands shard batches to the database in groups: every batch waiting when a
/// transaction starts goes into it (up to `rows_max` mutations), so shards that
/// are busy together share one commit and one fsync. A shard's writer waits for
/// its batch's answer before sending the next, so each shard still has at most
/// one batch in flight and the database holds a prefix of every shard's history.
/// A failed transaction fails every batch in it; each of those shards reloads.
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    shard: u32,
    epoch: u64,
    mutations: Vec<Mutation>,
    done: oneshot::Sender<Result<(), Arc<CommitError>>>,
}

impl Committer {
    /// A committer and its `workers` committing tasks, for the caller to spawn:
    /// one for SQLite (one writer at a time anyway), a few for a server database,
    /// whose own group commit overlaps them.
    pub fn new(
        store: SharedStore,
        workers: usize,
        rows_max: usize,
    ) -> (
        Arc<Committer>,
        Vec<impl Future<Output = ()> + Send + 'static>,
    ) {
        assert!(workers > 0 && rows_max > 0);
        let (jobs, receiver) = mpsc::channel(COMMIT_JOBS_MAX);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let tasks = (0..workers)
            .map(|_| commit_groups(store.clone(), receiver.clone(), rows_max))
            .collect();
        (Arc::new(Committer { jobs }), tasks)
    }

    /// Commits one shard's batch, possibly with other shards' batches.
    pub async fn commit(
        &self,
        shard: u32,
        epoch: u64,
        mutations: Vec<Mutation>,
    ) -> Result<(), Arc<CommitError>> {
        let (done, answer) = oneshot::channel();
        let job = Job {
            shard,
            epoch,
            mutations,
            done,
        };
        if self.jobs.send(job).await.is_err() {
            return Err(Arc::new(CommitError::Stopped));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Arc::new(CommitError::Stopped)))
    }
}

async fn commit_groups(
    store: SharedStore,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    rows_max: usize,
) {
    loop {
        let group = {
            let mut jobs = receiver.lock().await;
            let Some(first) = jobs.recv().await else {
                return;
            };
            let mut rows = first.mutations.len();
            let mut group = vec![first];
            while rows < rows_max {
                match jobs.try_recv() {
                    Ok(job) => {
                        rows += job.mutations.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group
        };
        let batches: Vec<ShardBatch<'_>> = group
            .iter()
            .map(|job| ShardBatch {
                shard: job.shard,
                epoch: job.epoch,
                mutations: &job.mutations,
            })
            .collect();
        let rows: usize = batches.iter().map(|b| b.mutations.len()).sum();
        let started = Instant::now();
        let result = store.commit_batches(&batches).await.map_err(Arc::new);
        metrics::histogram!(m::WRITER_FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        if result.is_ok() {
            metrics::histogram!(m::WRITER_BATCH_ROWS).record(rows as f64);
        }
        drop(batches);
        for job in group {
            let _ = job.done.send(result.clone());
        }
    }
}
