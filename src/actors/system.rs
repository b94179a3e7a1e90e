//! The actix runtime: one `System` on its own thread and its `Arbiter`s (each an
//! OS thread with a single-threaded runtime). A shard's actors and its writer all
//! live on arbiter `shard % arbiters`, and HTTP connections are served on the
//! arbiters too, so most of a request's hops (handler to actor, actor to writer,
//! commit to waiting handlers) stay on one thread instead of waking another.

use std::thread::JoinHandle;

use actix::ArbiterHandle;
use tokio::sync::oneshot;

/// The arbiter of shard (or task) `index` among `arbiters`: a shard's actors,
/// its writer and the HTTP work for its items all run there.
pub fn arbiter_of(index: usize, arbiters: usize) -> usize {
    index % arbiters
}

pub struct ActorSystem {
    arbiters: Vec<ArbiterHandle>,
    system: actix::System,
    thread: Option<JoinHandle<()>>,
}

impl ActorSystem {
    /// Starts `arbiter_count` arbiters whose runtimes poll for I/O after every
    /// `event_interval` tasks they run (None: tokio's default).
    pub fn start(arbiter_count: usize, event_interval: Option<u32>) -> ActorSystem {
        assert!(arbiter_count > 0 && event_interval != Some(0));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("actix-system".into())
            .spawn(move || {
                let runner = actix::System::new();
                runner.block_on(async move {
                    let arbiters: Vec<ArbiterHandle> = (0..arbiter_count)
                        .map(|_| {
                            actix::Arbiter::with_tokio_rt(move || {
                                let mut runtime = tokio::runtime::Builder::new_current_thread();
                                runtime.enable_all();
                                if let Some(interval) = event_interval {
                                    runtime.event_interval(interval);
                                }
                                runtime.build().expect("an arbiter's runtime builds")
                            })
                            .handle()
                        })
                        .collect();
                    started_tx
                        .send((arbiters, actix::System::current()))
                        .expect("the starter waits for the arbiters");
                });
                if let Err(error) = runner.run() {
                    tracing::error!(%error, "actor system ended with an error");
                }
            })
            .expect("the actor system thread starts");
        let (arbiters, system) = started_rx
            .recv()
            .expect("the actor system thread sends its arbiters");
        ActorSystem {
            arbiters,
            system,
            thread: Some(thread),
        }
    }

    pub fn arbiters(&self) -> &[ArbiterHandle] {
        &self.arbiters
    }

    /// Runs `task` on arbiter [`arbiter_of`]`(index, arbiters)`. The receiver resolves (with an
    /// error, which means the same) when the task has ended or was dropped.
    pub fn spawn_on<F>(&self, index: usize, task: F) -> oneshot::Receiver<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (ended, ended_rx) = oneshot::channel();
        let arbiter = &self.arbiters[arbiter_of(index, self.arbiters.len())];
        arbiter.spawn(async move {
            task.await;
            let _ = ended.send(());
        });
        ended_rx
    }

    /// Stops every arbiter and waits for the system thread.
    pub fn stop(mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
