//! The order state machine: which event moves an order from which status to
//! which, and what that does to stock. `OrderStatus::apply` is the only place the
//! table of API.md is written down.

use super::ids::{OrderId, ProductId, UserId};
use super::refusal::Refusal;
use super::time::UnixMillis;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    PaymentFailed,
    Expired,
    Cancelled,
    Shipped,
    Delivered,
    ReturnRequested,
    Returned,
}

/// What happens to an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    PaymentSucceeded,
    PaymentFailed,
    Expire,
    Cancel,
    Ship,
    Deliver,
    RequestReturn,
    CompleteReturn { restock: bool },
}

/// How a transition moves the order's quantity between the stock counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StockEffect {
    None,
    /// reserved -> available
    Release,
    /// reserved -> sold
    Sell,
    /// sold -> available
    Refund,
    /// sold -> written_off
    WriteOff,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 9] = [
        OrderStatus::PendingPayment,
        OrderStatus::Paid,
        OrderStatus::PaymentFailed,
        OrderStatus::Expired,
        OrderStatus::Cancelled,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::ReturnRequested,
        OrderStatus::Returned,
    ];

    /// The next status and the stock effect of `event`, or `invalid_state`.
    pub fn apply(self, event: OrderEvent) -> Result<(OrderStatus, StockEffect), Refusal> {
        use OrderEvent as E;
        use OrderStatus as S;
        let next = match (self, event) {
            (S::PendingPayment, E::PaymentSucceeded) => (S::Paid, StockEffect::Sell),
            (S::PendingPayment, E::PaymentFailed) => (S::PaymentFailed, StockEffect::Release),
            (S::PendingPayment, E::Expire) => (S::Expired, StockEffect::Release),
            (S::PendingPayment, E::Cancel) => (S::Cancelled, StockEffect::Release),
            (S::Paid, E::Cancel) => (S::Cancelled, StockEffect::Refund),
            (S::Paid, E::Ship) => (S::Shipped, StockEffect::None),
            (S::Shipped, E::Deliver) => (S::Delivered, StockEffect::None),
            (S::Delivered, E::RequestReturn) => (S::ReturnRequested, StockEffect::None),
            (S::ReturnRequested, E::CompleteReturn { restock: true }) => {
                (S::Returned, StockEffect::Refund)
            }
            (S::ReturnRequested, E::CompleteReturn { restock: false }) => {
                (S::Returned, StockEffect::WriteOff)
            }
            _ => return Err(Refusal::InvalidState),
        };
        Ok(next)
    }

    /// Live orders hold stock (reserved or sold) and count toward `per_user_limit`.
    pub fn is_live(self) -> bool {
        !matches!(
            self,
            OrderStatus::PaymentFailed
                | OrderStatus::Expired
                | OrderStatus::Cancelled
                | OrderStatus::Returned
        )
    }

    /// Orders in these statuses hold their quantity in `sold`.
    pub fn holds_sold(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid
                | OrderStatus::Shipped
                | OrderStatus::Delivered
                | OrderStatus::ReturnRequested
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "PENDING_PAYMENT",
            OrderStatus::Paid => "PAID",
            OrderStatus::PaymentFailed => "PAYMENT_FAILED",
            OrderStatus::Expired => "EXPIRED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::ReturnRequested => "RETURN_REQUESTED",
            OrderStatus::Returned => "RETURNED",
        }
    }

    pub fn parse(text: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// An order as the API shows it and the database stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub product_id: ProductId,
    pub quantity: u64,
    pub unit_price: u64,
    pub status: OrderStatus,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// When an unpaid reservation lapses.
    pub expires_at: UnixMillis,
}

impl Order {
    pub fn amount(&self) -> u64 {
        self.unit_price.saturating_mul(self.quantity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [OrderEvent; 9] = [
        OrderEvent::PaymentSucceeded,
        OrderEvent::PaymentFailed,
        OrderEvent::Expire,
        OrderEvent::Cancel,
        OrderEvent::Ship,
        OrderEvent::Deliver,
        OrderEvent::RequestReturn,
        OrderEvent::CompleteReturn { restock: true },
        OrderEvent::CompleteReturn { restock: false },
    ];

    #[test]
    fn terminal_statuses_accept_no_event() {
        for status in OrderStatus::ALL.into_iter().filter(|s| !s.is_live()) {
            for event in EVENTS {
                assert_eq!(status.apply(event), Err(Refusal::InvalidState));
            }
        }
    }

    #[test]
    fn stock_effects_keep_holdings_consistent() {
        // An effect must move quantity out of the place the old status holds it
        // and into the place the new status holds it.
        for status in OrderStatus::ALL {
            for event in EVENTS {
                let Ok((next, effect)) = status.apply(event) else {
                    continue;
                };
                let from = holding(status);
                let to = holding(next);
                let expected = match (from, to) {
                    (a, b) if a == b => StockEffect::None,
                    ("reserved", "available") => StockEffect::Release,
                    ("reserved", "sold") => StockEffect::Sell,
                    ("sold", "available") => StockEffect::Refund,
                    ("sold", "released") => {
                        // RETURNED holds nothing; restock decides where it went.
                        assert!(matches!(
                            effect,
                            StockEffect::Refund | StockEffect::WriteOff
                        ));
                        continue;
                    }
                    other => panic!("unexpected move {other:?} for {status:?} {event:?}"),
                };
                assert_eq!(effect, expected, "{status:?} + {event:?}");
            }
        }
    }

    fn holding(status: OrderStatus) -> &'static str {
        match status {
            OrderStatus::PendingPayment => "reserved",
            s if s.holds_sold() => "sold",
            OrderStatus::Returned => "released",
            _ => "available",
        }
    }

    #[test]
    fn status_names_round_trip() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
    }
}
