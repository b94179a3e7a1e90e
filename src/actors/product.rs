//! `ProductActor`: the one place a product's stock changes. Each handler admits
//! the message (is the shard's writer taking work, is this actor's state
//! current), calls one `ProductBook` method, submits the resulting mutations to
//! the shard writer and replies with the outcome and the ticket of its batch.
//! It never waits for the database; whoever must answer durably awaits the ticket.

use actix::{Actor, AsyncContext, Context, Handler, Message};

use super::NotDecided;
use super::core::ItemCore;
use crate::domain::idempotency::{Decision, IDEMPOTENCY_RETENTION};
use crate::domain::{
    IdempotencyKey, ItemKey, Order, OrderId, ProductBook, ProductInfo, ProductStock, Quantity,
    Refusal, UnixMillis, UserId,
};
use crate::metrics as m;
use crate::persistence::writer::Ticket;
use crate::persistence::{KeyRecord, Mutation};

pub struct ProductActor {
    book: ProductBook,
    core: ItemCore,
}

/// A decision and the batch it (or what it depends on) is committed in.
#[derive(Debug)]
pub struct Decided<T> {
    pub outcome: Result<T, Refusal>,
    pub ticket: Ticket,
}

#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Decided<Order>, NotDecided>")]
pub struct PlaceOrder {
    pub user: UserId,
    pub quantity: Quantity,
    pub key: Option<IdempotencyKey>,
}

#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<(ProductInfo, ProductStock), NotDecided>")]
pub struct GetProduct;

/// The periodic check: expiries, key retention, staleness, idleness.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
struct Tick;

impl ProductActor {
    pub(crate) fn new(book: ProductBook, core: ItemCore) -> Self {
        ProductActor { book, core }
    }

    fn counts(&self) -> Mutation {
        Mutation::ProductCounts {
            id: self.book.info.id,
            stock: self.book.stock(),
            views_delta: 0,
        }
    }

    fn expire_due(&mut self, now: UnixMillis, ctx: &mut Context<Self>) {
        if self.book.next_expiry().is_none_or(|at| at > now) || self.core.admit(ctx).is_err() {
            return;
        }
        let expired = self.book.expire_due(now);
        let mut mutations: Vec<Mutation> = expired
            .iter()
            .map(|order| Mutation::OrderUpdated {
                id: order.id,
                status: order.status,
                updated_at: order.updated_at,
            })
            .collect();
        mutations.push(self.counts());
        metrics::counter!(m::RESERVATIONS_EXPIRED_TOTAL).increment(expired.len() as u64);
        // On failure the actor retires and its successor expires them again.
        let _ = self.core.submit(mutations, ctx);
    }
}

impl Actor for ProductActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.core.config.mailbox_capacity);
        ctx.run_interval(self.core.config.tick_interval, |_, ctx| {
            ctx.notify(Tick);
        });
    }
}

impl Handler<PlaceOrder> for ProductActor {
    type Result = Result<Decided<Order>, NotDecided>;

    fn handle(&mut self, msg: PlaceOrder, ctx: &mut Self::Context) -> Self::Result {
        self.core.admit(ctx)?;
        let now = UnixMillis::now();
        let decision = self.book.place_order(
            OrderId::generate(),
            &msg.user,
            msg.quantity,
            msg.key.as_ref(),
            now,
            self.core.config.reservation_ttl,
        );
        let key_record = |outcome: Result<String, Refusal>| KeyRecord {
            item: ItemKey::Product(self.book.info.id),
            user: msg.user.clone(),
            key: msg.key.clone().expect("only keyed requests are recorded"),
            fingerprint: msg.quantity.get(),
            outcome,
            recorded_at: now,
        };
        let (outcome, mutations) = match decision {
            Decision::Made(order) => {
                let mut mutations = vec![Mutation::OrderPlaced(order.clone()), self.counts()];
                if msg.key.is_some() {
                    mutations.push(Mutation::KeyRecorded(key_record(Ok(order.id.to_string()))));
                }
                (Ok(order), mutations)
            }
            Decision::Refused(refusal) if msg.key.is_some() => (
                Err(refusal),
                vec![Mutation::KeyRecorded(key_record(Err(refusal)))],
            ),
            Decision::Refused(refusal) => (Err(refusal), Vec::new()),
            Decision::Answered(outcome) => {
                let ticket = self.core.barrier();
                return Ok(Decided { outcome, ticket });
            }
        };
        let result = match &outcome {
            Ok(_) => "placed",
            Err(refusal) => refusal.code(),
        };
        metrics::counter!(m::RESERVATIONS_TOTAL, "result" => result).increment(1);
        let ticket = if mutations.is_empty() {
            Ticket::settled()
        } else {
            self.core.submit(mutations, ctx)?
        };
        Ok(Decided { outcome, ticket })
    }
}

impl Handler<GetProduct> for ProductActor {
    type Result = Result<(ProductInfo, ProductStock), NotDecided>;

    fn handle(&mut self, _: GetProduct, ctx: &mut Self::Context) -> Self::Result {
        self.core.check_current(ctx)?;
        Ok((self.book.info.clone(), self.book.stock()))
    }
}

impl Handler<Tick> for ProductActor {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        if self.core.is_stale() {
            self.core.retire(ctx);
            return;
        }
        let now = UnixMillis::now();
        self.expire_due(now, ctx);
        self.book
            .expire_idempotency_keys(now, IDEMPOTENCY_RETENTION);
        // Unpaid reservations keep the actor alive: their expiry is its job.
        if self.book.next_expiry().is_none() && self.core.is_idle() {
            self.core.retire(ctx);
        }
    }
}
