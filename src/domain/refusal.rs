//! Business refusals: the expected "no" answers of the engine. They are values,
//! replied to the caller and (for idempotent requests) remembered; never panics.

/// Every refusal the engine gives, with its stable API `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Refusal {
    #[error("the product does not exist")]
    ProductNotFound,
    #[error("not enough stock available for the whole quantity")]
    OutOfStock,
    #[error("the order would exceed the per-user limit for this product")]
    PurchaseLimitExceeded,
    #[error("the product is not on sale now")]
    SaleNotActive,
    #[error("the order does not exist")]
    OrderNotFound,
    #[error("the order's status does not allow this transition")]
    InvalidState,
    #[error("the order's reservation has expired")]
    OrderExpired,
    #[error("the stock change would make available stock negative")]
    InsufficientStock,
    #[error("the campaign does not exist")]
    CampaignNotFound,
    #[error("every coupon of the campaign has been issued")]
    SoldOut,
    #[error("the user already holds the most coupons of this campaign allowed")]
    IssueLimitReached,
    #[error("the campaign is not active now")]
    CampaignNotActive,
    #[error("the Idempotency-Key was used before with a different request")]
    IdempotencyKeyReused,
    #[error("the sale window must start before it ends")]
    InvalidSaleWindow,
}

impl Refusal {
    pub const ALL: [Refusal; 14] = [
        Refusal::ProductNotFound,
        Refusal::OutOfStock,
        Refusal::PurchaseLimitExceeded,
        Refusal::SaleNotActive,
        Refusal::OrderNotFound,
        Refusal::InvalidState,
        Refusal::OrderExpired,
        Refusal::InsufficientStock,
        Refusal::CampaignNotFound,
        Refusal::SoldOut,
        Refusal::IssueLimitReached,
        Refusal::CampaignNotActive,
        Refusal::IdempotencyKeyReused,
        Refusal::InvalidSaleWindow,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Refusal::ProductNotFound => "product_not_found",
            Refusal::OutOfStock => "out_of_stock",
            Refusal::PurchaseLimitExceeded => "purchase_limit_exceeded",
            Refusal::SaleNotActive => "sale_not_active",
            Refusal::OrderNotFound => "order_not_found",
            Refusal::InvalidState => "invalid_state",
            Refusal::OrderExpired => "order_expired",
            Refusal::InsufficientStock => "insufficient_stock",
            Refusal::CampaignNotFound => "campaign_not_found",
            Refusal::SoldOut => "sold_out",
            Refusal::IssueLimitReached => "issue_limit_reached",
            Refusal::CampaignNotActive => "campaign_not_active",
            Refusal::IdempotencyKeyReused => "idempotency_key_reused",
            Refusal::InvalidSaleWindow => "invalid_sale_window",
        }
    }

    pub fn from_code(code: &str) -> Option<Refusal> {
        Refusal::ALL.into_iter().find(|r| r.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for refusal in Refusal::ALL {
            assert_eq!(Refusal::from_code(refusal.code()), Some(refusal));
        }
        let mut codes: Vec<_> = Refusal::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Refusal::ALL.len());
    }
}
