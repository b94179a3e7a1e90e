//! `ProductActor`: the one place a product's stock changes. Each handler admits
//! the message (is the shard's writer taking work, is this actor's state
//! current), calls one `ProductBook` method, submits the resulting mutations to
//! the shard writer and replies with the outcome and the ticket of its batch.
//! It never waits for the database; whoever must answer durably awaits the ticket.
//!
//! A periodic tick applies due automatic transitions (expiry of unpaid
//! reservations, shipping, delivery), hands counted views to the writer, and
//! passivates the actor when it is idle with nothing due soon.

use actix::{Actor, AsyncContext, Context, Handler, Message};

use super::NotDecided;
use super::core::ItemCore;
use crate::domain::idempotency::{Decision, IDEMPOTENCY_RETENTION};
use crate::domain::{
    IdempotencyKey, ItemKey, Order, OrderEvent, OrderId, ProductBook, ProductInfo, ProductPatch,
    ProductStock, Quantity, Refusal, UnixMillis, UserId,
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

impl<T> Decided<T> {
    fn refused(refusal: Refusal) -> Self {
        Decided {
            outcome: Err(refusal),
            ticket: Ticket::settled(),
        }
    }
}

#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Decided<Order>, NotDecided>")]
pub struct PlaceOrder {
    pub user: UserId,
    pub quantity: Quantity,
    pub key: Option<IdempotencyKey>,
}

/// Moves an order by `event`; `user`, unless an administrator asks, must own it.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Decided<Order>, NotDecided>")]
pub struct ChangeOrder {
    pub order: OrderId,
    pub user: Option<UserId>,
    pub event: OrderEvent,
}

/// Reads the product with live counts; counts one view.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<(ProductInfo, ProductStock), NotDecided>")]
pub struct GetProduct;

#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Decided<(ProductInfo, ProductStock)>, NotDecided>")]
pub struct UpdateProduct(pub ProductPatch);

/// Adds (`delta > 0`) or removes available units.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Decided<(ProductInfo, ProductStock)>, NotDecided>")]
pub struct AdjustStock {
    pub delta: i64,
}

/// The periodic check: due transitions, views, key retention, idleness.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
struct Tick;

impl ProductActor {
    pub(crate) fn new(book: ProductBook, core: ItemCore) -> Self {
        ProductActor { book, core }
    }

    /// The counts now, carrying the views counted since the last flush.
    fn counts(&mut self) -> Mutation {
        Mutation::ProductCounts {
            id: self.book.info.id,
            stock: self.book.stock(),
            views_delta: self.book.take_unflushed_views(),
            next_due_at: self.book.next_due(),
        }
    }

    fn view(&self) -> (ProductInfo, ProductStock) {
        (self.book.info.clone(), self.book.stock())
    }

    fn advance_due(&mut self, now: UnixMillis, ctx: &mut Context<Self>) {
        if self.book.next_due().is_none_or(|at| at > now) || self.core.admit(ctx).is_err() {
            return;
        }
        let changed = self.book.advance_due(now);
        let expired = changed
            .iter()
            .filter(|o| o.status == crate::domain::OrderStatus::Expired)
            .count();
        let mut mutations: Vec<Mutation> = changed.iter().map(status_change).collect();
        mutations.push(self.counts());
        metrics::counter!(m::RESERVATIONS_EXPIRED_TOTAL).increment(expired as u64);
        // On failure the actor retires and its successor applies them again.
        let _ = self.core.submit(mutations, ctx);
    }

    fn flush_views(&mut self, ctx: &mut Context<Self>) {
        if self.book.unflushed_views() == 0 || self.core.admit(ctx).is_err() {
            return;
        }
        let counts = self.counts();
        let _ = self.core.submit(vec![counts], ctx);
    }
}

fn status_change(order: &Order) -> Mutation {
    Mutation::OrderUpdated {
        id: order.id,
        status: order.status,
        updated_at: order.updated_at,
    }
}

impl Actor for ProductActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.core.config.mailbox_capacity);
        ctx.run_interval(self.core.config.tick_interval, |_, ctx| {
            ctx.notify(Tick);
        });
        // Transitions that fell due while the product was not active.
        ctx.notify(Tick);
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
                let mut mutations = vec![Mutation::OrderPlaced(order.clone())];
                if msg.key.is_some() {
                    mutations.push(Mutation::KeyRecorded(key_record(Ok(order.id.to_string()))));
                }
                mutations.push(self.counts());
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
        m::RESERVATIONS.count(&outcome);
        let ticket = if mutations.is_empty() {
            Ticket::settled()
        } else {
            self.core.submit(mutations, ctx)?
        };
        Ok(Decided { outcome, ticket })
    }
}

impl Handler<ChangeOrder> for ProductActor {
    type Result = Result<Decided<Order>, NotDecided>;

    fn handle(&mut self, msg: ChangeOrder, ctx: &mut Self::Context) -> Self::Result {
        self.core.admit(ctx)?;
        let changed =
            self.book
                .transition(&msg.order, msg.user.as_ref(), msg.event, UnixMillis::now());
        let order = match changed {
            Ok(order) => order,
            Err(refusal) => return Ok(Decided::refused(refusal)),
        };
        let mutations = vec![status_change(&order), self.counts()];
        let ticket = self.core.submit(mutations, ctx)?;
        Ok(Decided {
            outcome: Ok(order),
            ticket,
        })
    }
}

impl Handler<GetProduct> for ProductActor {
    type Result = Result<(ProductInfo, ProductStock), NotDecided>;

    fn handle(&mut self, _: GetProduct, ctx: &mut Self::Context) -> Self::Result {
        self.core.check_current(ctx)?;
        // Counted here, written with the next batch or tick: never a write per view.
        self.book.count_view();
        Ok(self.view())
    }
}

impl Handler<UpdateProduct> for ProductActor {
    type Result = Result<Decided<(ProductInfo, ProductStock)>, NotDecided>;

    fn handle(&mut self, msg: UpdateProduct, ctx: &mut Self::Context) -> Self::Result {
        self.core.admit(ctx)?;
        if let Err(refusal) = self.book.update_info(msg.0) {
            return Ok(Decided::refused(refusal));
        }
        let info = self.book.info.clone();
        let ticket = self
            .core
            .submit(vec![Mutation::ProductInfoChanged(info)], ctx)?;
        Ok(Decided {
            outcome: Ok(self.view()),
            ticket,
        })
    }
}

impl Handler<AdjustStock> for ProductActor {
    type Result = Result<Decided<(ProductInfo, ProductStock)>, NotDecided>;

    fn handle(&mut self, msg: AdjustStock, ctx: &mut Self::Context) -> Self::Result {
        self.core.admit(ctx)?;
        if let Err(refusal) = self.book.adjust_stock(msg.delta) {
            return Ok(Decided::refused(refusal));
        }
        let counts = self.counts();
        let ticket = self.core.submit(vec![counts], ctx)?;
        Ok(Decided {
            outcome: Ok(self.view()),
            ticket,
        })
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
        self.advance_due(now, ctx);
        self.flush_views(ctx);
        self.book
            .expire_idempotency_keys(now, IDEMPOTENCY_RETENTION);
        // Idle, and nothing due before the node's timer sweep would wake it again.
        let due_soon = self
            .book
            .next_due()
            .is_some_and(|at| at <= now.plus(self.core.config.passivate_after));
        if !due_soon && self.book.unflushed_views() == 0 && self.core.is_idle() {
            self.core.retire(ctx);
        }
    }
}
