//! The per-node registry of item actors: finds the running actor of an item or
//! activates one from the database, exactly once however many requests arrive
//! for it together.
//!
//! Each item has a slot (a `OnceCell`) in a `DashMap`. The first request for an
//! item initialises the slot (wait for the shard's writer to be ready, note its
//! generation, load from the store, start the actor on the shard's arbiter);
//! requests arriving meanwhile wait on the same cell. An actor that stops removes
//! its own slot, and only its own (pointer comparison), so a successor's slot is
//! never removed by a predecessor.

use std::sync::{Arc, Weak};
use std::time::Duration;

use actix::{Actor, Addr, ArbiterHandle};
use dashmap::DashMap;
use tokio::sync::OnceCell;

use super::core::{Forget, ItemCore};
use super::{CampaignActor, EngineConfig, EngineError, ProductActor};
use crate::cluster::{Ownership, shard_of};
use crate::domain::idempotency::IDEMPOTENCY_RETENTION;
use crate::domain::{
    CampaignBook, CampaignId, ItemKey, ProductBook, ProductId, Refusal, UnixMillis,
};
use crate::persistence::SharedStore;
use crate::persistence::writer::ShardWriter;

type Slot<A> = Arc<OnceCell<Addr<A>>>;

/// Whether `slot`, whose activation just failed for us, is the map's `entry`
/// and may be removed from it: still empty, and held by nobody but the map and
/// us. Another request waiting on the same slot activates next when ours fails;
/// removing the slot under it would let a third request start a second
/// activation beside it, and two actors of one item decide on two copies of its
/// stock. (Read under the map's lock, so no request takes the slot meanwhile.)
fn abandoned<A: Actor>(entry: &Slot<A>, slot: &Slot<A>) -> bool {
    Arc::ptr_eq(entry, slot) && entry.get().is_none() && Arc::strong_count(entry) == 2
}

/// How long an activation waits for a recovering shard before answering 503.
const SHARD_READY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Registry {
    products: DashMap<ProductId, Slot<ProductActor>>,
    campaigns: DashMap<CampaignId, Slot<CampaignActor>>,
    store: SharedStore,
    ownership: Arc<dyn Ownership>,
    /// One writer per shard, indexed by shard.
    writers: Vec<Arc<ShardWriter>>,
    arbiters: Vec<ArbiterHandle>,
    config: Arc<EngineConfig>,
    me: Weak<Registry>,
}

impl Registry {
    pub fn new(
        store: SharedStore,
        ownership: Arc<dyn Ownership>,
        writers: Vec<Arc<ShardWriter>>,
        arbiters: Vec<ArbiterHandle>,
        config: Arc<EngineConfig>,
    ) -> Arc<Registry> {
        assert!(!writers.is_empty() && !arbiters.is_empty());
        Arc::new_cyclic(|me| Registry {
            products: DashMap::new(),
            campaigns: DashMap::new(),
            store,
            ownership,
            writers,
            arbiters,
            config,
            me: me.clone(),
        })
    }

    pub fn writers(&self) -> &[Arc<ShardWriter>] {
        &self.writers
    }

    pub fn shard_count(&self) -> u32 {
        self.writers.len() as u32
    }

    /// The running actor of a product, activating it if needed.
    pub async fn product(&self, id: ProductId) -> Result<Addr<ProductActor>, EngineError> {
        if let Some(addr) = self.products.get(&id).and_then(|slot| slot.get().cloned()) {
            if addr.connected() {
                return Ok(addr);
            }
            // Stopped without leaving (it was ending when we looked): clear it.
            self.products
                .remove_if(&id, |_, s| s.get().is_some_and(|a| a == &addr));
        }
        let slot = self.products.entry(id).or_default().clone();
        let activated = slot
            .get_or_try_init(|| self.activate_product(id, slot.clone()))
            .await
            .cloned();
        if activated.is_err() {
            self.products.remove_if(&id, |_, s| abandoned(s, &slot));
        }
        activated
    }

    /// The running actor of a campaign, activating it if needed.
    pub async fn campaign(&self, id: CampaignId) -> Result<Addr<CampaignActor>, EngineError> {
        if let Some(addr) = self.campaigns.get(&id).and_then(|slot| slot.get().cloned()) {
            if addr.connected() {
                return Ok(addr);
            }
            // Stopped without leaving (it was ending when we looked): clear it.
            self.campaigns
                .remove_if(&id, |_, s| s.get().is_some_and(|a| a == &addr));
        }
        let slot = self.campaigns.entry(id).or_default().clone();
        let activated = slot
            .get_or_try_init(|| self.activate_campaign(id, slot.clone()))
            .await
            .cloned();
        if activated.is_err() {
            self.campaigns.remove_if(&id, |_, s| abandoned(s, &slot));
        }
        activated
    }

    /// The shard's writer and arbiter, once the shard is served here and ready.
    async fn shard_for(
        &self,
        item: ItemKey,
    ) -> Result<(Arc<ShardWriter>, ArbiterHandle), EngineError> {
        let shard = shard_of(item, self.shard_count());
        if !self.ownership.owns(shard) {
            return Err(EngineError::Unavailable(
                "the item's shard is not served here",
            ));
        }
        let writer = self.writers[shard as usize].clone();
        tokio::time::timeout(SHARD_READY_TIMEOUT, writer.ready())
            .await
            .map_err(|_| EngineError::Unavailable("the item's shard is recovering"))?;
        let arbiter = self.arbiters[super::arbiter_of(shard as usize, self.arbiters.len())].clone();
        Ok((writer, arbiter))
    }

    async fn activate_product(
        &self,
        id: ProductId,
        slot: Slot<ProductActor>,
    ) -> Result<Addr<ProductActor>, EngineError> {
        let (writer, arbiter) = self.shard_for(ItemKey::Product(id)).await?;
        // Noted before loading: if a batch fails while we load, the new actor's
        // first submit finds the generation moved and it reloads.
        let generation = writer.generation();
        let since = UnixMillis::now().minus(IDEMPOTENCY_RETENTION);
        let load = self
            .store
            .load_product(id, since)
            .await?
            .ok_or(Refusal::ProductNotFound)?;
        let mut book =
            ProductBook::restore(load.info, load.stock, load.live_orders, self.config.timing)
                .map_err(crate::persistence::StoreError::Corrupt)?;
        for key in load.keys {
            book.remember_key(
                key.user,
                key.key,
                key.fingerprint,
                key.outcome,
                key.recorded_at,
            );
        }
        let forget = self.forget(slot, move |registry, slot| {
            registry
                .products
                .remove_if(&id, |_, s| Arc::ptr_eq(s, &slot));
        });
        let core = ItemCore::new("product", writer, generation, self.config.clone(), forget);
        let actor = ProductActor::new(book, core);
        Ok(ProductActor::start_in_arbiter(&arbiter, move |_| actor))
    }

    async fn activate_campaign(
        &self,
        id: CampaignId,
        slot: Slot<CampaignActor>,
    ) -> Result<Addr<CampaignActor>, EngineError> {
        let (writer, arbiter) = self.shard_for(ItemKey::Campaign(id)).await?;
        let generation = writer.generation();
        let since = UnixMillis::now().minus(IDEMPOTENCY_RETENTION);
        let load = self
            .store
            .load_campaign(id, since)
            .await?
            .ok_or(Refusal::CampaignNotFound)?;
        let mut book = CampaignBook::restore(load.info, load.stock, load.user_issued)
            .map_err(crate::persistence::StoreError::Corrupt)?;
        for key in load.keys {
            book.remember_key(key.user, key.key, key.outcome, key.recorded_at);
        }
        let forget = self.forget(slot, move |registry, slot| {
            registry
                .campaigns
                .remove_if(&id, |_, s| Arc::ptr_eq(s, &slot));
        });
        let core = ItemCore::new("campaign", writer, generation, self.config.clone(), forget);
        let actor = CampaignActor::new(book, core);
        Ok(CampaignActor::start_in_arbiter(&arbiter, move |_| actor))
    }

    /// Activates, every `interval`, the products with orders due an automatic
    /// transition soon, so that timers fire for products that were passivated
    /// or not yet active since a restart (the first sweep runs at once).
    pub async fn sweep_timers(self: Arc<Self>, interval: Duration) {
        /// Products activated per sweep at most; the rest wait for the next.
        const SWEEP_PRODUCTS_MAX: u32 = 1_000;
        loop {
            let horizon = UnixMillis::now().plus(interval * 2);
            match self.store.products_due(horizon, SWEEP_PRODUCTS_MAX).await {
                Ok(products) => {
                    for id in products {
                        let owned = self
                            .ownership
                            .owns(shard_of(ItemKey::Product(id), self.shard_count()));
                        if owned && let Err(error) = self.product(id).await {
                            tracing::warn!(product = id.0, %error, "timer sweep could not activate");
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "timer sweep failed"),
            }
            tokio::time::sleep(interval).await;
        }
    }

    fn forget<A: Actor>(
        &self,
        slot: Slot<A>,
        remove: impl FnOnce(&Registry, Slot<A>) + Send + 'static,
    ) -> Forget {
        let registry = self.me.clone();
        Box::new(move || {
            if let Some(registry) = registry.upgrade() {
                remove(&registry, slot);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use tokio::sync::Semaphore;

    use super::*;
    use crate::actors::{AckMode, ActorSystem};
    use crate::cluster::LocalOwnership;
    use crate::domain::{
        CampaignInfo, CampaignStock, Coupon, CouponId, Order, OrderId, ProductInfo, ProductStock,
        Timing, UserId,
    };
    use crate::persistence::writer::WriterLimits;
    use crate::persistence::{
        Backend, CampaignLoad, CommitError, NewCampaign, NewProduct, ProductLoad, ShardBatch,
        Store, StoreError,
    };

    /// A store whose first two product loads each wait for a permit the test
    /// gives; the first then fails as an unreachable database does.
    struct GatedLoads {
        inner: SharedStore,
        loads: AtomicUsize,
        gates: [Semaphore; 2],
    }

    impl GatedLoads {
        fn loads(&self) -> usize {
            self.loads.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Store for GatedLoads {
        fn backend(&self) -> Backend {
            self.inner.backend()
        }
        async fn migrate(&self) -> crate::persistence::Result<()> {
            self.inner.migrate().await
        }
        async fn ping(&self) -> crate::persistence::Result<()> {
            self.inner.ping().await
        }
        async fn shard_count(&self, if_new: u32) -> crate::persistence::Result<u32> {
            self.inner.shard_count(if_new).await
        }
        async fn acquire_shards(
            &self,
            shards: &[u32],
            node: &str,
        ) -> crate::persistence::Result<Vec<u64>> {
            self.inner.acquire_shards(shards, node).await
        }
        async fn insert_product(
            &self,
            new: &NewProduct,
        ) -> crate::persistence::Result<(ProductInfo, ProductStock)> {
            self.inner.insert_product(new).await
        }
        async fn product(
            &self,
            id: ProductId,
        ) -> crate::persistence::Result<Option<(ProductInfo, ProductStock)>> {
            self.inner.product(id).await
        }
        async fn products(
            &self,
            after: Option<ProductId>,
            limit: u32,
        ) -> crate::persistence::Result<Vec<(ProductInfo, ProductStock)>> {
            self.inner.products(after, limit).await
        }
        async fn load_product(
            &self,
            id: ProductId,
            keys_since: UnixMillis,
        ) -> crate::persistence::Result<Option<ProductLoad>> {
            let load = self.loads.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = self.gates.get(load) {
                gate.acquire().await.expect("the gate stays open").forget();
            }
            if load == 0 {
                return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
            }
            self.inner.load_product(id, keys_since).await
        }
        async fn products_due(
            &self,
            until: UnixMillis,
            limit: u32,
        ) -> crate::persistence::Result<Vec<ProductId>> {
            self.inner.products_due(until, limit).await
        }
        async fn order(&self, id: OrderId) -> crate::persistence::Result<Option<Order>> {
            self.inner.order(id).await
        }
        async fn user_orders(
            &self,
            user: &UserId,
            before: Option<OrderId>,
            limit: u32,
        ) -> crate::persistence::Result<Vec<Order>> {
            self.inner.user_orders(user, before, limit).await
        }
        async fn insert_campaign(
            &self,
            new: &NewCampaign,
        ) -> crate::persistence::Result<(CampaignInfo, CampaignStock)> {
            self.inner.insert_campaign(new).await
        }
        async fn campaign(
            &self,
            id: CampaignId,
        ) -> crate::persistence::Result<Option<(CampaignInfo, CampaignStock)>> {
            self.inner.campaign(id).await
        }
        async fn load_campaign(
            &self,
            id: CampaignId,
            keys_since: UnixMillis,
        ) -> crate::persistence::Result<Option<CampaignLoad>> {
            self.inner.load_campaign(id, keys_since).await
        }
        async fn user_coupons(
            &self,
            user: &UserId,
            before: Option<CouponId>,
            limit: u32,
        ) -> crate::persistence::Result<Vec<Coupon>> {
            self.inner.user_coupons(user, before, limit).await
        }
        async fn commit_batches(&self, batches: &[ShardBatch<'_>]) -> Result<(), CommitError> {
            self.inner.commit_batches(batches).await
        }
    }

    /// Waits (at most 10 s) until `done` holds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A request fails to activate a product (the database away) while a second
    /// waits on the same slot; the second then activates it, and a third arriving
    /// meanwhile must wait for that activation, not start a second actor of the
    /// same product beside it.
    #[tokio::test]
    async fn a_failed_activation_leaves_the_slot_to_the_request_waiting_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("registry.db").display());
        let inner = crate::persistence::connect(&url, 4, Default::default())
            .await
            .unwrap();
        inner.migrate().await.unwrap();
        assert_eq!(inner.shard_count(1).await.unwrap(), 1);
        let epochs = inner.acquire_shards(&[0], "node-a").await.unwrap();
        let (product, _) = inner
            .insert_product(&NewProduct {
                name: "drop".into(),
                price: 100,
                stock: 10,
                per_user_limit: None,
                sale_starts_at: None,
                sale_ends_at: None,
                created_at: UnixMillis::now(),
            })
            .await
            .unwrap();
        let id = product.id;
        let store = Arc::new(GatedLoads {
            inner,
            loads: AtomicUsize::new(0),
            gates: [Semaphore::const_new(0), Semaphore::const_new(0)],
        });
        let system = ActorSystem::start(1, None);
        let limits = WriterLimits {
            batch_rows_max: 100,
            queue_rows_max: 1_000,
        };
        let registry = Registry::new(
            store.clone(),
            Arc::new(LocalOwnership::new("node-a", 1)),
            vec![ShardWriter::new(0, epochs[0], limits)],
            system.arbiters().to_vec(),
            Arc::new(EngineConfig {
                ack: AckMode::Durable,
                timing: Timing {
                    reservation_ttl: Duration::from_secs(600),
                    shipping_delay: Duration::from_secs(600),
                    delivery_delay: Duration::from_secs(600),
                },
                passivate_after: Duration::from_secs(600),
                tick_interval: Duration::from_secs(1),
                mailbox_capacity: 64,
                commit_timeout: Duration::from_secs(30),
            }),
        );
        let holders = |registry: &Registry| {
            registry
                .products
                .get(&id)
                .map_or(0, |slot| Arc::strong_count(&slot))
        };
        let request = |registry: &Arc<Registry>| {
            let registry = registry.clone();
            tokio::spawn(async move { registry.product(id).await })
        };

        let first = request(&registry);
        until("the first request loads", || store.loads() == 1).await;
        let second = request(&registry);
        // The map, the first request and its activation, the second request.
        until("the second request waits on the slot", || {
            holders(&registry) == 4
        })
        .await;

        store.gates[0].add_permits(1);
        let failed = first.await.unwrap();
        assert!(
            matches!(failed, Err(EngineError::Store(ref e)) if e.is_unavailable()),
            "{failed:?}"
        );
        until("the second request loads", || store.loads() == 2).await;

        let third = request(&registry);
        // The third waits on the second's activation (the map, the second and its
        // activation, the third) or, if the slot was dropped, loads on its own.
        until("the third request waits or loads", || {
            holders(&registry) == 4 || store.loads() == 3
        })
        .await;
        store.gates[1].add_permits(1);
        let second = second.await.unwrap().expect("the second request activates");
        let third = third
            .await
            .unwrap()
            .expect("the third request finds an actor");
        assert_eq!(
            store.loads(),
            2,
            "the product was loaded twice after the failure"
        );
        assert!(second == third, "two actors of one product");
        assert!(second.connected());
        drop(registry);
        system.stop();
    }
}
