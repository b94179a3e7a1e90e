//! `Engine`: the operations the HTTP layer calls. Each resolves the item's actor,
//! sends it one message, and (with durable acks) waits for the batch that holds
//! the decision before answering. Reads of stored data go to the store.

use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, Message};

use super::campaign::{GetCampaign, IssueCoupon};
use super::product::{AdjustStock, ChangeOrder, Decided, GetProduct, PlaceOrder, UpdateProduct};
use super::{AckMode, EngineConfig, EngineError, NotDecided, Registry};
use crate::domain::{
    CampaignId, CampaignInfo, CampaignStock, Coupon, CouponId, IdempotencyKey, Order, OrderEvent,
    OrderId, OrderStatus, ProductId, ProductInfo, ProductPatch, ProductStock, Quantity, Refusal,
    UserId,
};
use crate::persistence::writer::Ticket;
use crate::persistence::{NewCampaign, NewProduct, SharedStore};

/// Attempts at one message when actors are being replaced (idle stop, reload).
const SEND_ATTEMPTS: usize = 4;

pub type ProductView = (ProductInfo, ProductStock);
pub type CampaignView = (CampaignInfo, CampaignStock);

pub struct Engine {
    registry: Arc<Registry>,
    store: SharedStore,
    config: Arc<EngineConfig>,
    /// The simulated payment gateway's chance of accepting a payment.
    payment_success_rate: f64,
}

/// What a caller asks of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderAction {
    /// Pay; `succeed` says what the (simulated) gateway answers, or None to let
    /// it decide with `payment_success_rate`.
    Pay {
        succeed: Option<bool>,
    },
    Cancel,
    Return,
    CompleteReturn {
        restock: bool,
    },
}

/// Who asks: a user, or an administrator (who may act on anyone's order where
/// the API allows it).
#[derive(Clone, Debug)]
pub struct Asker {
    pub user: UserId,
    pub admin: bool,
}

impl Engine {
    pub fn new(
        registry: Arc<Registry>,
        store: SharedStore,
        config: Arc<EngineConfig>,
        payment_success_rate: f64,
    ) -> Self {
        Engine {
            registry,
            store,
            config,
            payment_success_rate,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    pub async fn create_product(&self, new: NewProduct) -> Result<ProductView, EngineError> {
        Ok(self.store.insert_product(&new).await?)
    }

    /// A product with live counts from its actor.
    pub async fn product(&self, id: ProductId) -> Result<ProductView, EngineError> {
        ask(|| self.registry.product(id), GetProduct).await
    }

    pub async fn update_product(
        &self,
        id: ProductId,
        patch: ProductPatch,
    ) -> Result<ProductView, EngineError> {
        let decided = ask(|| self.registry.product(id), UpdateProduct(patch)).await?;
        self.answer(decided).await
    }

    pub async fn adjust_stock(
        &self,
        id: ProductId,
        delta: i64,
    ) -> Result<ProductView, EngineError> {
        let decided = ask(|| self.registry.product(id), AdjustStock { delta }).await?;
        self.answer(decided).await
    }

    /// Moves an order for `asker`. The stored order names the product (and so
    /// the actor); its owner is checked here and again by the actor.
    pub async fn change_order(
        &self,
        id: OrderId,
        asker: &Asker,
        action: OrderAction,
    ) -> Result<Order, EngineError> {
        // Paying and returning are the owner's; cancelling is also an
        // administrator's; completing a return is only an administrator's (the
        // HTTP layer checks the role).
        let admin_may = matches!(
            action,
            OrderAction::Cancel | OrderAction::CompleteReturn { .. }
        );
        let acting_as_admin = asker.admin && admin_may;
        let viewer = (!acting_as_admin).then_some(&asker.user);
        let stored = self.order(id, viewer).await?;
        let event = match action {
            OrderAction::Pay { succeed } => {
                if stored.status == OrderStatus::Expired {
                    return Err(Refusal::OrderExpired.into());
                }
                let succeed =
                    succeed.unwrap_or_else(|| rand::random::<f64>() < self.payment_success_rate);
                if succeed {
                    OrderEvent::PaymentSucceeded
                } else {
                    OrderEvent::PaymentFailed
                }
            }
            OrderAction::Cancel => OrderEvent::Cancel,
            OrderAction::Return => OrderEvent::RequestReturn,
            OrderAction::CompleteReturn { restock } => OrderEvent::CompleteReturn { restock },
        };
        let message = ChangeOrder {
            order: id,
            user: viewer.cloned(),
            event,
        };
        let decided = ask(|| self.registry.product(stored.product_id), message).await?;
        self.answer(decided).await
    }

    pub async fn products(
        &self,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<Vec<ProductView>, EngineError> {
        Ok(self.store.products(after, limit).await?)
    }

    pub async fn place_order(
        &self,
        product: ProductId,
        user: UserId,
        quantity: Quantity,
        key: Option<IdempotencyKey>,
    ) -> Result<Order, EngineError> {
        let message = PlaceOrder {
            user,
            quantity,
            key,
        };
        let decided = ask(|| self.registry.product(product), message).await?;
        self.answer(decided).await
    }

    /// An order as stored; `viewer` (unless admin) must own it.
    pub async fn order(&self, id: OrderId, viewer: Option<&UserId>) -> Result<Order, EngineError> {
        let order = self
            .store
            .order(id)
            .await?
            .filter(|order| viewer.is_none_or(|user| order.user_id == *user));
        order.ok_or(EngineError::Refused(Refusal::OrderNotFound))
    }

    pub async fn user_orders(
        &self,
        user: &UserId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, EngineError> {
        Ok(self.store.user_orders(user, before, limit).await?)
    }

    pub async fn create_campaign(&self, new: NewCampaign) -> Result<CampaignView, EngineError> {
        Ok(self.store.insert_campaign(&new).await?)
    }

    pub async fn campaign(&self, id: CampaignId) -> Result<CampaignView, EngineError> {
        ask(|| self.registry.campaign(id), GetCampaign).await
    }

    pub async fn issue_coupon(
        &self,
        campaign: CampaignId,
        user: UserId,
        key: Option<IdempotencyKey>,
    ) -> Result<Coupon, EngineError> {
        let decided = ask(
            || self.registry.campaign(campaign),
            IssueCoupon { user, key },
        )
        .await?;
        self.answer(decided).await
    }

    pub async fn user_coupons(
        &self,
        user: &UserId,
        before: Option<CouponId>,
        limit: u32,
    ) -> Result<Vec<Coupon>, EngineError> {
        Ok(self.store.user_coupons(user, before, limit).await?)
    }

    /// Waits for durability as configured, then gives the decision.
    async fn answer<T>(&self, decided: Decided<T>) -> Result<T, EngineError> {
        if self.config.ack == AckMode::Durable {
            self.durable(&decided.ticket).await?;
        }
        Ok(decided.outcome?)
    }

    async fn durable(&self, ticket: &Ticket) -> Result<(), EngineError> {
        match tokio::time::timeout(self.config.commit_timeout, ticket.committed()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(EngineError::Unavailable("the change could not be stored")),
            Err(_) => Err(EngineError::Unavailable("storing the change timed out")),
        }
    }
}

/// Sends `message` to the item's actor, resolving it again when the actor it
/// reached was stopping.
async fn ask<A, M, R, F, Fut>(resolve: F, message: M) -> Result<R, EngineError>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message<Result = Result<R, NotDecided>> + Clone + Send + 'static,
    R: Send + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Addr<A>, EngineError>>,
{
    for _ in 0..SEND_ATTEMPTS {
        let addr = resolve().await?;
        match addr.send(message.clone()).await {
            Ok(Ok(reply)) => return Ok(reply),
            Ok(Err(NotDecided::Unavailable(why))) => return Err(EngineError::Unavailable(why)),
            // The actor stopped before or while handling: a fresh one decides.
            Ok(Err(NotDecided::Retry)) | Err(_) => tokio::task::yield_now().await,
        }
    }
    Err(EngineError::Unavailable("the item is being reloaded"))
}
