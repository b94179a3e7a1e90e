//! The actors that own items: `ProductActor` and `CampaignActor` wrap the domain
//! books and decide every change to one item in order; the `Registry` finds or
//! activates them; `Engine` is what the HTTP layer calls. No SQL or HTTP here:
//! state comes from and goes to `persistence` through the `Store` trait and the
//! shard writers.

mod campaign;
mod core;
mod engine;
mod product;
mod registry;
mod system;

use std::time::Duration;

pub use campaign::CampaignActor;
pub use engine::{Asker, CampaignView, Engine, OrderAction, ProductView};
pub use product::ProductActor;
pub use registry::Registry;
pub use system::{ActorSystem, arbiter_of};

use crate::domain::{Refusal, Timing};
use crate::persistence::StoreError;

/// When a client is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AckMode {
    /// After the batch holding the change is committed (default): nothing
    /// acknowledged is lost.
    Durable,
    /// As soon as the actor decides: faster, but a crash loses the changes of the
    /// batches not yet committed.
    Memory,
}

/// The engine's settings, from configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub ack: AckMode,
    /// Reservation lifetime and the delays of automatic shipping and delivery.
    pub timing: Timing,
    /// An actor with nothing pending stops after this long without messages.
    pub passivate_after: Duration,
    /// How often an actor expires reservations, flushes views and checks idleness.
    pub tick_interval: Duration,
    /// Messages an actor's mailbox holds before senders wait.
    pub mailbox_capacity: usize,
    /// How long a durable reply waits for its batch before answering 503.
    pub commit_timeout: Duration,
}

/// Why the engine could not answer with a decision.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Try again later (503 with Retry-After).
    #[error("temporarily unavailable: {0}")]
    Unavailable(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An actor's reply when it did not decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotDecided {
    /// The actor is stopping (idle, or its shard reloads): ask a fresh one.
    Retry,
    /// The shard cannot take work now.
    Unavailable(&'static str),
}
