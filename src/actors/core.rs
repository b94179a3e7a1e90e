//! What every item actor shares: its shard's writer and the generation it was
//! loaded under, the ticket of its last submitted batch (for passivation), and
//! its way out of the registry when it stops.

use std::sync::Arc;
use std::time::Instant;

use actix::ActorContext;

use super::{EngineConfig, NotDecided};
use crate::metrics as m;
use crate::persistence::Mutation;
use crate::persistence::writer::{ShardWriter, SubmitError, Ticket};

pub(crate) type Forget = Box<dyn FnOnce() + Send>;

pub(crate) struct ItemCore {
    pub writer: Arc<ShardWriter>,
    /// The writer generation this actor's state was loaded under.
    pub generation: u64,
    pub config: Arc<EngineConfig>,
    kind: &'static str,
    /// Removes this actor from the registry; called once, when it retires.
    forget: Option<Forget>,
    last_ticket: Ticket,
    last_message_at: Instant,
    retired: bool,
}

impl ItemCore {
    pub fn new(
        kind: &'static str,
        writer: Arc<ShardWriter>,
        generation: u64,
        config: Arc<EngineConfig>,
        forget: Forget,
    ) -> Self {
        metrics::gauge!(m::ACTIVE_ACTORS, "kind" => kind).increment(1.0);
        metrics::counter!(m::ACTIVATIONS_TOTAL, "kind" => kind).increment(1);
        ItemCore {
            writer,
            generation,
            config,
            kind,
            forget: Some(forget),
            last_ticket: Ticket::settled(),
            last_message_at: Instant::now(),
            retired: false,
        }
    }

    /// Called before deciding anything: may the actor decide now?
    pub fn admit(&mut self, ctx: &mut impl ActorContext) -> Result<(), NotDecided> {
        self.last_message_at = Instant::now();
        if self.retired {
            return Err(NotDecided::Retry);
        }
        self.writer
            .admit(self.generation)
            .map_err(|error| self.refuse(error, ctx))
    }

    /// Called before answering a read: is this actor's state current?
    pub fn check_current(&mut self, ctx: &mut impl ActorContext) -> Result<(), NotDecided> {
        self.last_message_at = Instant::now();
        if !self.retired && self.is_stale() {
            self.retire(ctx);
        }
        if self.retired {
            return Err(NotDecided::Retry);
        }
        Ok(())
    }

    /// Queues the mutations of a decision already applied to the book. If the
    /// writer will not take them, the book is ahead of the database and the actor
    /// retires, so that it is reloaded.
    pub fn submit(
        &mut self,
        mutations: Vec<Mutation>,
        ctx: &mut impl ActorContext,
    ) -> Result<Ticket, NotDecided> {
        match self.writer.submit(self.generation, mutations) {
            Ok(ticket) => {
                self.last_ticket = ticket.clone();
                Ok(ticket)
            }
            Err(error) => {
                self.retire(ctx);
                Err(self.refuse(error, ctx))
            }
        }
    }

    fn refuse(&mut self, error: SubmitError, ctx: &mut impl ActorContext) -> NotDecided {
        match error {
            SubmitError::Full => NotDecided::Unavailable("the write-behind queue is full"),
            SubmitError::Closed => NotDecided::Unavailable("the server is shutting down"),
            SubmitError::Stale => {
                self.retire(ctx);
                NotDecided::Retry
            }
        }
    }

    /// The ticket to answer with when a reply depends on earlier, possibly
    /// uncommitted changes (an idempotent replay): everything submitted so far.
    pub fn barrier(&self) -> Ticket {
        self.writer.barrier()
    }

    /// Whether the actor's state predates a failed batch.
    pub fn is_stale(&self) -> bool {
        self.writer.generation() != self.generation
    }

    /// Idle: no message for `passivate_after` and its last batch settled.
    pub fn is_idle(&self) -> bool {
        self.last_message_at.elapsed() >= self.config.passivate_after
            && self.last_ticket.is_settled()
    }

    /// Leaves the registry (new requests activate a fresh actor) and stops.
    pub fn retire(&mut self, ctx: &mut impl ActorContext) {
        if self.retired {
            return;
        }
        self.retired = true;
        if let Some(forget) = self.forget.take() {
            forget();
        }
        ctx.stop();
    }
}

impl Drop for ItemCore {
    fn drop(&mut self) {
        if let Some(forget) = self.forget.take() {
            forget();
        }
        metrics::gauge!(m::ACTIVE_ACTORS, "kind" => self.kind).decrement(1.0);
    }
}
