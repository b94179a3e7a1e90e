//! Checked input types: once a value is one of these, it is valid. Parsing happens
//! once, at the edge (HTTP, CLI, database load).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use ulid::Ulid;

/// Why a value could not become one of the checked types. `field` names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InputError {
    pub field: &'static str,
    pub reason: String,
}

impl InputError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        InputError {
            field,
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId(pub u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CampaignId(pub u64);

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for CampaignId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An item that has exactly one owning actor in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKey {
    Product(ProductId),
    Campaign(CampaignId),
}

impl ItemKey {
    /// One letter for the kind, as stored beside idempotency keys.
    pub fn kind_code(self) -> &'static str {
        match self {
            ItemKey::Product(_) => "P",
            ItemKey::Campaign(_) => "C",
        }
    }

    pub fn raw_id(self) -> u64 {
        match self {
            ItemKey::Product(id) => id.0,
            ItemKey::Campaign(id) => id.0,
        }
    }
}

/// A new ULID, greater than every one this process made before: ids made in
/// the same millisecond sort in the order they were made, not at random, so
/// "newest first" by id is the order of creation.
fn next_ulid() -> Ulid {
    static GENERATOR: std::sync::Mutex<ulid::Generator> =
        std::sync::Mutex::new(ulid::Generator::new());
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Fails only past 2^80 ids in one millisecond.
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

macro_rules! ulid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The id of ", $what, ": a ULID, so ids sort by creation time.")]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Ulid);

        impl $name {
            pub fn generate() -> Self {
                $name(next_ulid())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InputError;
            fn from_str(text: &str) -> Result<Self, InputError> {
                Ulid::from_string(text)
                    .map($name)
                    .map_err(|_| InputError::new("id", concat!("not ", $what, " id")))
            }
        }
    };
}

ulid_id!(OrderId, "an order");
ulid_id!(CouponId, "a coupon");

/// A user id, from the token's `sub`: 1..=128 characters. Cheap to clone; actors
/// keep one per buyer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl UserId {
    pub const LENGTH_MAX_CHARS: usize = 128;

    pub fn parse(text: &str) -> Result<Self, InputError> {
        let chars = text.chars().count();
        if chars == 0 || chars > Self::LENGTH_MAX_CHARS {
            return Err(InputError::new("sub", "must be 1..=128 characters"));
        }
        Ok(UserId(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Units in one order or stock movement: at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u32);

impl Quantity {
    pub fn new(value: u64, max: u32) -> Result<Self, InputError> {
        if value == 0 || value > u64::from(max) {
            return Err(InputError::new(
                "quantity",
                format!("must be between 1 and {max}"),
            ));
        }
        Ok(Quantity(value as u32))
    }

    pub fn get(self) -> u64 {
        u64::from(self.0)
    }
}

/// The `Idempotency-Key` header: 1..=255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    pub const LENGTH_MAX: usize = 255;

    pub fn parse(text: &str) -> Result<Self, InputError> {
        let visible = text.bytes().all(|b| b.is_ascii_graphic());
        if text.is_empty() || text.len() > Self::LENGTH_MAX || !visible {
            return Err(InputError::new(
                "Idempotency-Key",
                "must be 1..=255 visible ASCII characters",
            ));
        }
        Ok(IdempotencyKey(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_in_the_order_they_are_made() {
        // Thousands in a row: many share a millisecond.
        let ids: Vec<OrderId> = (0..10_000).map(|_| OrderId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let order = OrderId::generate();
        assert!(
            CouponId::generate().0 > order.0,
            "one sequence for every kind"
        );
    }

    #[test]
    fn quantity_is_bounded() {
        assert!(Quantity::new(0, 10).is_err());
        assert!(Quantity::new(11, 10).is_err());
        assert_eq!(Quantity::new(10, 10).unwrap().get(), 10);
    }

    #[test]
    fn user_id_length_counts_characters() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"é".repeat(128)).is_ok());
        assert!(UserId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn idempotency_key_is_visible_ascii() {
        assert!(IdempotencyKey::parse("order-1:retry").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("naïve").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn order_ids_round_trip() {
        let id = OrderId::generate();
        assert_eq!(id.to_string().parse::<OrderId>().unwrap(), id);
        assert!("not-an-id".parse::<OrderId>().is_err());
    }
}
