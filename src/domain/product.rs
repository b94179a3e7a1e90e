//! A product's stock and its live orders: `ProductStock` (the five counts and
//! their invariant) and `ProductBook` (everything the product's actor decides
//! with). Every change is a method here that checks the invariant after it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use super::idempotency::{Decision, IdempotencyLedger};
use super::ids::{IdempotencyKey, OrderId, ProductId, Quantity, UserId};
use super::order::{Order, OrderEvent, OrderStatus, StockEffect};
use super::refusal::Refusal;
use super::time::UnixMillis;

/// The counts of one product. Always
/// `available + reserved + sold + written_off == total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProductStock {
    pub total: u64,
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
    pub written_off: u64,
}

impl ProductStock {
    pub fn new(total: u64) -> Self {
        ProductStock {
            total,
            available: total,
            ..ProductStock::default()
        }
    }

    pub fn is_consistent(&self) -> bool {
        [self.available, self.reserved, self.sold, self.written_off]
            .into_iter()
            .try_fold(0u64, u64::checked_add)
            == Some(self.total)
    }

    /// Asserted after every change, in release builds too: overselling is worse
    /// than a crash.
    pub fn check(&self) {
        assert!(self.is_consistent(), "stock invariant broken: {self:?}");
    }

    /// available -> reserved, all or nothing.
    pub fn reserve(&mut self, quantity: u64) -> Result<(), Refusal> {
        if self.available < quantity {
            return Err(Refusal::OutOfStock);
        }
        self.available -= quantity;
        self.reserved += quantity;
        self.check();
        Ok(())
    }

    /// Applies a transition's effect for `quantity` units.
    pub fn apply(&mut self, effect: StockEffect, quantity: u64) {
        let (from, to) = match effect {
            StockEffect::None => return,
            StockEffect::Release => (&mut self.reserved, &mut self.available),
            StockEffect::Sell => (&mut self.reserved, &mut self.sold),
            StockEffect::Refund => (&mut self.sold, &mut self.available),
            StockEffect::WriteOff => (&mut self.sold, &mut self.written_off),
        };
        *from = from
            .checked_sub(quantity)
            .expect("a transition moves only stock that its order holds");
        *to += quantity;
        self.check();
    }

    /// Adds (`delta > 0`) or removes (`delta < 0`) units of available stock.
    pub fn adjust(&mut self, delta: i64) -> Result<(), Refusal> {
        let magnitude = delta.unsigned_abs();
        if delta < 0 {
            if self.available < magnitude {
                return Err(Refusal::InsufficientStock);
            }
            self.available -= magnitude;
            self.total -= magnitude;
        } else {
            self.available += magnitude;
            self.total += magnitude;
        }
        self.check();
        Ok(())
    }
}

/// The order lifetimes a book applies (settings `reservation_ttl`,
/// `shipping_delay`, `delivery_delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub reservation_ttl: Duration,
    pub shipping_delay: Duration,
    pub delivery_delay: Duration,
}

impl Timing {
    /// When the order's next automatic transition is due, if it has one.
    pub fn due_at(&self, order: &Order) -> Option<UnixMillis> {
        match order.status {
            OrderStatus::PendingPayment => Some(order.expires_at),
            OrderStatus::Paid => Some(order.updated_at.plus(self.shipping_delay)),
            OrderStatus::Shipped => Some(order.updated_at.plus(self.delivery_delay)),
            _ => None,
        }
    }

    /// The automatic event of a status: what happens when its time is due.
    fn due_event(status: OrderStatus) -> Option<OrderEvent> {
        match status {
            OrderStatus::PendingPayment => Some(OrderEvent::Expire),
            OrderStatus::Paid => Some(OrderEvent::Ship),
            OrderStatus::Shipped => Some(OrderEvent::Deliver),
            _ => None,
        }
    }
}

/// Changes to a product's description; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price: Option<u64>,
    pub per_user_limit: Option<Option<u64>>,
    pub sale_starts_at: Option<Option<UnixMillis>>,
    pub sale_ends_at: Option<Option<UnixMillis>>,
}

/// Orders remembered as expired, so that paying one late says `order_expired`
/// rather than `invalid_state`: more than any reservation burst between two
/// flushes, and a few MB at most.
const RECENTLY_EXPIRED_MAX: usize = 100_000;

/// What describes a product, apart from its counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductInfo {
    pub id: ProductId,
    pub name: String,
    pub price: u64,
    pub per_user_limit: Option<u64>,
    pub sale_starts_at: Option<UnixMillis>,
    pub sale_ends_at: Option<UnixMillis>,
    pub views: u64,
    pub created_at: UnixMillis,
}

impl ProductInfo {
    pub fn on_sale(&self, now: UnixMillis) -> bool {
        self.sale_starts_at.is_none_or(|start| now >= start)
            && self.sale_ends_at.is_none_or(|end| now < end)
    }
}

/// Everything a product's actor decides with: the product, its counts, its live
/// orders, each buyer's live quantity and the idempotency keys it has seen.
#[derive(Debug)]
pub struct ProductBook {
    pub info: ProductInfo,
    stock: ProductStock,
    /// Orders that hold stock (reserved or sold), by id. A B-tree, not a hash
    /// table: ids grow with time, so inserts land at its right edge, and it never
    /// stops the actor to rehash hundreds of thousands of orders at once.
    live: BTreeMap<OrderId, Order>,
    /// Live orders with an automatic transition (expiry, shipping, delivery), by
    /// due time.
    timers: BTreeSet<(UnixMillis, OrderId)>,
    /// Reservations that expired lately, oldest first.
    recently_expired: VecDeque<OrderId>,
    recently_expired_set: HashSet<OrderId>,
    timing: Timing,
    /// Each buyer's quantity over live orders, for `per_user_limit`.
    user_quantities: HashMap<UserId, u64>,
    idempotency: IdempotencyLedger<Result<Order, Refusal>>,
    /// Views counted and not yet handed to the writer.
    views_unflushed: u64,
}

impl ProductBook {
    pub fn new(info: ProductInfo, stock: ProductStock, timing: Timing) -> Self {
        stock.check();
        ProductBook {
            info,
            stock,
            live: BTreeMap::new(),
            timers: BTreeSet::new(),
            recently_expired: VecDeque::new(),
            recently_expired_set: HashSet::new(),
            timing,
            user_quantities: HashMap::new(),
            idempotency: IdempotencyLedger::default(),
            views_unflushed: 0,
        }
    }

    /// Rebuilds a book from stored state, checking that the counts agree with the
    /// live orders.
    pub fn restore(
        info: ProductInfo,
        stock: ProductStock,
        live_orders: Vec<Order>,
        timing: Timing,
    ) -> Result<Self, String> {
        if !stock.is_consistent() {
            return Err(format!(
                "product {}: stored counts inconsistent: {stock:?}",
                info.id
            ));
        }
        let mut book = ProductBook::new(info, stock, timing);
        let (mut reserved, mut sold) = (0u64, 0u64);
        for order in live_orders {
            match order.status {
                OrderStatus::PendingPayment => reserved += order.quantity,
                s if s.holds_sold() => sold += order.quantity,
                _ => continue,
            }
            book.insert_live(order);
        }
        if reserved != stock.reserved || sold != stock.sold {
            return Err(format!(
                "product {}: stored counts {stock:?} disagree with live orders \
                 (reserved {reserved}, sold {sold})",
                book.info.id
            ));
        }
        Ok(book)
    }

    pub fn stock(&self) -> ProductStock {
        self.stock
    }

    pub fn live_order(&self, id: &OrderId) -> Option<&Order> {
        self.live.get(id)
    }

    pub fn live_orders(&self) -> impl Iterator<Item = &Order> {
        self.live.values()
    }

    pub fn user_quantity(&self, user: &UserId) -> u64 {
        self.user_quantities.get(user).copied().unwrap_or(0)
    }

    /// Remembers a keyed outcome loaded from the database.
    pub fn remember_key(
        &mut self,
        user: UserId,
        key: IdempotencyKey,
        quantity: u64,
        outcome: Result<Order, Refusal>,
        recorded_at: UnixMillis,
    ) {
        self.idempotency
            .record(user, key, quantity, outcome, recorded_at);
    }

    /// Decides an order of `quantity` units by `user`. `order_id` is the id the
    /// order gets if placed.
    pub fn place_order(
        &mut self,
        order_id: OrderId,
        user: &UserId,
        quantity: Quantity,
        key: Option<&IdempotencyKey>,
        now: UnixMillis,
    ) -> Decision<Order> {
        let quantity = quantity.get();
        let mut ledger = std::mem::take(&mut self.idempotency);
        let decision = ledger.decide(user, key, quantity, now, || {
            self.decide_order(order_id, user, quantity, now)
        });
        self.idempotency = ledger;
        decision
    }

    fn decide_order(
        &mut self,
        order_id: OrderId,
        user: &UserId,
        quantity: u64,
        now: UnixMillis,
    ) -> Result<Order, Refusal> {
        if !self.info.on_sale(now) {
            return Err(Refusal::SaleNotActive);
        }
        if let Some(limit) = self.info.per_user_limit
            && self.user_quantity(user) + quantity > limit
        {
            return Err(Refusal::PurchaseLimitExceeded);
        }
        self.stock.reserve(quantity)?;
        let order = Order {
            id: order_id,
            user_id: user.clone(),
            product_id: self.info.id,
            quantity,
            unit_price: self.info.price,
            status: OrderStatus::PendingPayment,
            created_at: now,
            updated_at: now,
            expires_at: now.plus(self.timing.reservation_ttl),
        };
        self.insert_live(order.clone());
        Ok(order)
    }

    /// Moves a live order by `event`. `user`, when given, must own the order.
    /// Paying a reservation past its expiry refuses with `order_expired`.
    pub fn transition(
        &mut self,
        order_id: &OrderId,
        user: Option<&UserId>,
        event: OrderEvent,
        now: UnixMillis,
    ) -> Result<Order, Refusal> {
        let paying = matches!(
            event,
            OrderEvent::PaymentSucceeded | OrderEvent::PaymentFailed
        );
        let Some(order) = self.live.get(order_id) else {
            if paying && self.recently_expired_set.contains(order_id) {
                return Err(Refusal::OrderExpired);
            }
            return Err(Refusal::InvalidState);
        };
        if user.is_some_and(|u| *u != order.user_id) {
            return Err(Refusal::OrderNotFound);
        }
        if paying && order.status == OrderStatus::PendingPayment && now >= order.expires_at {
            // Due but not yet swept: refused now, expired by the next sweep.
            return Err(Refusal::OrderExpired);
        }
        self.apply_event(order_id, event, now)
    }

    /// Applies every automatic transition due at `now` (expiry of unpaid
    /// reservations, shipping, delivery); returns the orders changed.
    pub fn advance_due(&mut self, now: UnixMillis) -> Vec<Order> {
        let due: Vec<OrderId> = self
            .timers
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| *id)
            .collect();
        due.iter()
            .map(|id| {
                let status = self.live[id].status;
                let event = Timing::due_event(status).expect("timed orders have a due event");
                self.apply_event(id, event, now)
                    .expect("a due transition is always allowed")
            })
            .collect()
    }

    /// When the next automatic transition is due.
    pub fn next_due(&self) -> Option<UnixMillis> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Whether any live order is an unpaid reservation.
    pub fn has_reservations(&self) -> bool {
        self.stock.reserved > 0
    }

    /// Changes the description. The sale window must stay ordered.
    pub fn update_info(&mut self, patch: ProductPatch) -> Result<&ProductInfo, Refusal> {
        let starts = patch.sale_starts_at.unwrap_or(self.info.sale_starts_at);
        let ends = patch.sale_ends_at.unwrap_or(self.info.sale_ends_at);
        if let (Some(start), Some(end)) = (starts, ends)
            && start >= end
        {
            return Err(Refusal::InvalidSaleWindow);
        }
        if let Some(name) = patch.name {
            self.info.name = name;
        }
        if let Some(price) = patch.price {
            self.info.price = price;
        }
        if let Some(limit) = patch.per_user_limit {
            self.info.per_user_limit = limit;
        }
        self.info.sale_starts_at = starts;
        self.info.sale_ends_at = ends;
        Ok(&self.info)
    }

    pub fn adjust_stock(&mut self, delta: i64) -> Result<ProductStock, Refusal> {
        self.stock.adjust(delta)?;
        Ok(self.stock)
    }

    pub fn count_view(&mut self) {
        self.views_unflushed += 1;
        self.info.views += 1;
    }

    pub fn unflushed_views(&self) -> u64 {
        self.views_unflushed
    }

    /// Views counted since the last call.
    pub fn take_unflushed_views(&mut self) -> u64 {
        std::mem::take(&mut self.views_unflushed)
    }

    pub fn expire_idempotency_keys(&mut self, now: UnixMillis, retention: Duration) {
        self.idempotency.expire(now, retention);
    }

    fn apply_event(
        &mut self,
        order_id: &OrderId,
        event: OrderEvent,
        now: UnixMillis,
    ) -> Result<Order, Refusal> {
        let order = self.live.get_mut(order_id).ok_or(Refusal::InvalidState)?;
        let (next, effect) = order.status.apply(event)?;
        if let Some(due) = self.timing.due_at(order) {
            self.timers.remove(&(due, order.id));
        }
        order.status = next;
        order.updated_at = now;
        let order = order.clone();
        self.stock.apply(effect, order.quantity);
        if let Some(due) = self.timing.due_at(&order) {
            self.timers.insert((due, order.id));
        }
        if next == OrderStatus::Expired {
            self.remember_expired(order.id);
        }
        if !next.is_live() {
            self.live.remove(order_id);
            let held = self
                .user_quantities
                .get_mut(&order.user_id)
                .expect("a live order's buyer has a quantity");
            *held -= order.quantity;
            if *held == 0 {
                self.user_quantities.remove(&order.user_id);
            }
        }
        Ok(order)
    }

    fn insert_live(&mut self, order: Order) {
        debug_assert!(order.status.is_live());
        // One hash either way; the key is an `Arc`, so the clone is a count.
        *self
            .user_quantities
            .entry(order.user_id.clone())
            .or_insert(0) += order.quantity;
        if let Some(due) = self.timing.due_at(&order) {
            self.timers.insert((due, order.id));
        }
        self.live.insert(order.id, order);
    }

    fn remember_expired(&mut self, id: OrderId) {
        if self.recently_expired.len() >= RECENTLY_EXPIRED_MAX
            && let Some(oldest) = self.recently_expired.pop_front()
        {
            self.recently_expired_set.remove(&oldest);
        }
        self.recently_expired.push_back(id);
        self.recently_expired_set.insert(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TIMING: Timing = Timing {
        reservation_ttl: Duration::from_secs(60),
        shipping_delay: Duration::from_secs(100),
        delivery_delay: Duration::from_secs(100),
    };

    fn info(per_user_limit: Option<u64>) -> ProductInfo {
        ProductInfo {
            id: ProductId(7),
            name: "sneaker".into(),
            price: 129_000,
            per_user_limit,
            sale_starts_at: None,
            sale_ends_at: None,
            views: 0,
            created_at: UnixMillis(0),
        }
    }

    fn user(n: u8) -> UserId {
        UserId::parse(&format!("user-{n}")).unwrap()
    }

    fn qty(n: u64) -> Quantity {
        Quantity::new(n, 10).unwrap()
    }

    fn place(book: &mut ProductBook, u: u8, q: u64, now: i64) -> Decision<Order> {
        book.place_order(OrderId::generate(), &user(u), qty(q), None, UnixMillis(now))
    }

    #[test]
    fn reserves_all_or_nothing() {
        let mut book = ProductBook::new(info(None), ProductStock::new(3), TIMING);
        assert!(matches!(place(&mut book, 1, 2, 0), Decision::Made(_)));
        assert_eq!(
            place(&mut book, 2, 2, 0),
            Decision::Refused(Refusal::OutOfStock)
        );
        assert_eq!(book.stock().available, 1);
        assert_eq!(book.stock().reserved, 2);
    }

    #[test]
    fn per_user_limit_counts_live_orders_only() {
        let mut book = ProductBook::new(info(Some(2)), ProductStock::new(10), TIMING);
        let Decision::Made(order) = place(&mut book, 1, 2, 0) else {
            panic!("refused")
        };
        assert_eq!(
            place(&mut book, 1, 1, 0),
            Decision::Refused(Refusal::PurchaseLimitExceeded)
        );
        book.transition(
            &order.id,
            Some(&user(1)),
            OrderEvent::PaymentFailed,
            UnixMillis(1),
        )
        .unwrap();
        assert!(matches!(place(&mut book, 1, 2, 2), Decision::Made(_)));
    }

    #[test]
    fn sale_window_is_half_open() {
        let mut product = info(None);
        product.sale_starts_at = Some(UnixMillis(100));
        product.sale_ends_at = Some(UnixMillis(200));
        let mut book = ProductBook::new(product, ProductStock::new(10), TIMING);
        assert_eq!(
            place(&mut book, 1, 1, 99),
            Decision::Refused(Refusal::SaleNotActive)
        );
        assert!(matches!(place(&mut book, 1, 1, 100), Decision::Made(_)));
        assert_eq!(
            place(&mut book, 1, 1, 200),
            Decision::Refused(Refusal::SaleNotActive)
        );
    }

    #[test]
    fn expiry_releases_and_blocks_late_payment() {
        let mut book = ProductBook::new(info(None), ProductStock::new(5), TIMING);
        let Decision::Made(order) = place(&mut book, 1, 3, 0) else {
            panic!("refused")
        };
        let due = order.expires_at;
        assert_eq!(
            book.transition(&order.id, None, OrderEvent::PaymentSucceeded, due),
            Err(Refusal::OrderExpired)
        );
        assert!(book.advance_due(UnixMillis(due.0 - 1)).is_empty());
        let expired = book.advance_due(due);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].status, OrderStatus::Expired);
        assert_eq!(book.stock(), ProductStock::new(5));
        assert_eq!(book.user_quantity(&user(1)), 0);
        // Paying it now still says expired, not invalid_state.
        assert_eq!(
            book.transition(&order.id, None, OrderEvent::PaymentSucceeded, due),
            Err(Refusal::OrderExpired)
        );
    }

    #[test]
    fn paid_orders_ship_then_deliver_on_their_own() {
        let mut book = ProductBook::new(info(None), ProductStock::new(5), TIMING);
        let Decision::Made(order) = place(&mut book, 1, 2, 0) else {
            panic!("refused")
        };
        let paid = book
            .transition(
                &order.id,
                Some(&user(1)),
                OrderEvent::PaymentSucceeded,
                UnixMillis(10),
            )
            .unwrap();
        assert_eq!(paid.status, OrderStatus::Paid);
        let shipping_due = UnixMillis(10).plus(TIMING.shipping_delay);
        assert_eq!(book.next_due(), Some(shipping_due));
        let shipped = book.advance_due(shipping_due);
        assert_eq!(shipped[0].status, OrderStatus::Shipped);
        let delivered = book.advance_due(shipping_due.plus(TIMING.delivery_delay));
        assert_eq!(delivered[0].status, OrderStatus::Delivered);
        assert_eq!(book.next_due(), None);
        assert_eq!(book.stock().sold, 2);
    }

    #[test]
    fn patch_keeps_the_window_ordered() {
        let mut book = ProductBook::new(info(None), ProductStock::new(5), TIMING);
        let patch = ProductPatch {
            sale_starts_at: Some(Some(UnixMillis(100))),
            sale_ends_at: Some(Some(UnixMillis(50))),
            ..ProductPatch::default()
        };
        assert_eq!(
            book.update_info(patch).err(),
            Some(Refusal::InvalidSaleWindow)
        );
        let patch = ProductPatch {
            price: Some(5),
            per_user_limit: Some(Some(1)),
            ..ProductPatch::default()
        };
        let info = book.update_info(patch).unwrap();
        assert_eq!((info.price, info.per_user_limit), (5, Some(1)));
    }

    #[test]
    fn another_users_order_is_not_found() {
        let mut book = ProductBook::new(info(None), ProductStock::new(5), TIMING);
        let Decision::Made(order) = place(&mut book, 1, 1, 0) else {
            panic!("refused")
        };
        assert_eq!(
            book.transition(&order.id, Some(&user(2)), OrderEvent::Cancel, UnixMillis(1)),
            Err(Refusal::OrderNotFound)
        );
    }

    #[test]
    fn restore_rejects_counts_that_disagree_with_orders() {
        let mut book = ProductBook::new(info(None), ProductStock::new(5), TIMING);
        place(&mut book, 1, 2, 0);
        let orders: Vec<Order> = book.live_orders().cloned().collect();
        assert!(ProductBook::restore(info(None), book.stock(), orders.clone(), TIMING).is_ok());
        assert!(ProductBook::restore(info(None), ProductStock::new(5), orders, TIMING).is_err());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Order {
            user: u8,
            quantity: u64,
            key: Option<u8>,
        },
        Event {
            pick: usize,
            event: OrderEvent,
        },
        Expire {
            advance_ms: i64,
        },
        Adjust {
            delta: i64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        let event = prop_oneof![
            Just(OrderEvent::PaymentSucceeded),
            Just(OrderEvent::PaymentFailed),
            Just(OrderEvent::Cancel),
            Just(OrderEvent::Ship),
            Just(OrderEvent::Deliver),
            Just(OrderEvent::RequestReturn),
            any::<bool>().prop_map(|restock| OrderEvent::CompleteReturn { restock }),
        ];
        prop_oneof![
            4 => (0u8..6, 1u64..=10, proptest::option::of(0u8..4))
                .prop_map(|(user, quantity, key)| Op::Order { user, quantity, key }),
            4 => (any::<usize>(), event).prop_map(|(pick, event)| Op::Event { pick, event }),
            1 => (0i64..120_000).prop_map(|advance_ms| Op::Expire { advance_ms }),
            1 => (-20i64..20).prop_map(|delta| Op::Adjust { delta }),
        ]
    }

    proptest! {
        #[test]
        fn no_sequence_breaks_the_invariants(
            total in 0u64..40,
            limit in proptest::option::of(1u64..8),
            ops in proptest::collection::vec(op(), 0..150),
        ) {
            let mut book = ProductBook::new(info(limit), ProductStock::new(total), TIMING);
            let mut known: Vec<OrderId> = Vec::new();
            let mut now = 0i64;
            for op in ops {
                match op {
                    Op::Order { user: u, quantity, key } => {
                        let key = key.map(|k| IdempotencyKey::parse(&format!("k{k}")).unwrap());
                        let d = book.place_order(
                            OrderId::generate(), &user(u), qty(quantity), key.as_ref(),
                            UnixMillis(now),
                        );
                        if let Decision::Made(order) = d {
                            known.push(order.id);
                        }
                    }
                    Op::Event { pick, event } => {
                        if !known.is_empty() {
                            let id = known[pick % known.len()];
                            let _ = book.transition(&id, None, event, UnixMillis(now));
                        }
                    }
                    Op::Expire { advance_ms } => {
                        now += advance_ms;
                        book.advance_due(UnixMillis(now));
                    }
                    Op::Adjust { delta } => {
                        let _ = book.adjust_stock(delta);
                    }
                }
                let stock = book.stock();
                prop_assert!(stock.is_consistent());
                // The counts agree with the sum over live orders, and every
                // user's live quantity respects the limit.
                let reserved: u64 = book.live_orders()
                    .filter(|o| o.status == OrderStatus::PendingPayment)
                    .map(|o| o.quantity).sum();
                let sold: u64 = book.live_orders()
                    .filter(|o| o.status.holds_sold()).map(|o| o.quantity).sum();
                prop_assert_eq!(reserved, stock.reserved);
                prop_assert_eq!(sold, stock.sold);
                for u in 0..6 {
                    let held = book.user_quantity(&user(u));
                    prop_assert!(limit.is_none_or(|l| held <= l));
                }
            }
        }
    }
}
