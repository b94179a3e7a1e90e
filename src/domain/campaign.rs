//! A coupon campaign: a fixed quantity of coupons handed out first come, first
//! served, at most `per_user_limit` to each user. `CampaignBook` is what the
//! campaign's actor decides with.

use std::collections::HashMap;
use std::time::Duration;

use super::idempotency::{Decision, IdempotencyLedger};
use super::ids::{CampaignId, CouponId, IdempotencyKey, UserId};
use super::refusal::Refusal;
use super::time::UnixMillis;

/// A campaign's counts. Always `issued <= quantity`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CampaignStock {
    pub quantity: u64,
    pub issued: u64,
}

impl CampaignStock {
    pub fn remaining(&self) -> u64 {
        self.quantity - self.issued
    }

    pub fn is_consistent(&self) -> bool {
        self.issued <= self.quantity
    }

    pub fn check(&self) {
        assert!(self.is_consistent(), "campaign invariant broken: {self:?}");
    }

    pub fn issue_one(&mut self) -> Result<(), Refusal> {
        if self.remaining() == 0 {
            return Err(Refusal::SoldOut);
        }
        self.issued += 1;
        self.check();
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discount {
    /// Minor units off.
    Fixed(u64),
    /// 1..=100 percent off.
    Percent(u8),
}

impl Discount {
    pub fn kind(self) -> &'static str {
        match self {
            Discount::Fixed(_) => "fixed",
            Discount::Percent(_) => "percent",
        }
    }

    pub fn value(self) -> u64 {
        match self {
            Discount::Fixed(v) => v,
            Discount::Percent(p) => u64::from(p),
        }
    }

    pub fn from_parts(kind: &str, value: u64) -> Option<Discount> {
        match kind {
            "fixed" => Some(Discount::Fixed(value)),
            "percent" if (1..=100).contains(&value) => Some(Discount::Percent(value as u8)),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignInfo {
    pub id: CampaignId,
    pub name: String,
    pub per_user_limit: u64,
    pub discount: Discount,
    pub starts_at: Option<UnixMillis>,
    pub ends_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
}

impl CampaignInfo {
    pub fn active(&self, now: UnixMillis) -> bool {
        self.starts_at.is_none_or(|start| now >= start) && self.ends_at.is_none_or(|end| now < end)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coupon {
    pub id: CouponId,
    pub campaign_id: CampaignId,
    pub user_id: UserId,
    pub issued_at: UnixMillis,
}

#[derive(Debug)]
pub struct CampaignBook {
    pub info: CampaignInfo,
    stock: CampaignStock,
    /// Coupons issued to each user so far.
    user_issued: HashMap<UserId, u64>,
    idempotency: IdempotencyLedger<Result<Coupon, Refusal>>,
}

/// Coupon requests carry no body: every request with one key is the same request.
const COUPON_FINGERPRINT: u64 = 0;

impl CampaignBook {
    /// A book from stored counts and each user's issued count; checks they agree.
    pub fn restore(
        info: CampaignInfo,
        stock: CampaignStock,
        user_issued: HashMap<UserId, u64>,
    ) -> Result<Self, String> {
        let sum: u64 = user_issued.values().sum();
        if !stock.is_consistent() || sum != stock.issued {
            return Err(format!(
                "campaign {}: stored counts {stock:?} disagree with {sum} coupons",
                info.id
            ));
        }
        Ok(CampaignBook {
            info,
            stock,
            user_issued,
            idempotency: IdempotencyLedger::default(),
        })
    }

    pub fn stock(&self) -> CampaignStock {
        self.stock
    }

    pub fn remember_key(
        &mut self,
        user: UserId,
        key: IdempotencyKey,
        outcome: Result<Coupon, Refusal>,
        recorded_at: UnixMillis,
    ) {
        self.idempotency
            .record(user, key, COUPON_FINGERPRINT, outcome, recorded_at);
    }

    pub fn issue_coupon(
        &mut self,
        coupon_id: CouponId,
        user: &UserId,
        key: Option<&IdempotencyKey>,
        now: UnixMillis,
    ) -> Decision<Coupon> {
        let mut ledger = std::mem::take(&mut self.idempotency);
        let decision = ledger.decide(user, key, COUPON_FINGERPRINT, now, || {
            self.decide_coupon(coupon_id, user, now)
        });
        self.idempotency = ledger;
        decision
    }

    fn decide_coupon(
        &mut self,
        coupon_id: CouponId,
        user: &UserId,
        now: UnixMillis,
    ) -> Result<Coupon, Refusal> {
        if !self.info.active(now) {
            return Err(Refusal::CampaignNotActive);
        }
        let held = self.user_issued.get(user).copied().unwrap_or(0);
        if held >= self.info.per_user_limit {
            return Err(Refusal::IssueLimitReached);
        }
        self.stock.issue_one()?;
        *self.user_issued.entry(user.clone()).or_insert(0) += 1;
        Ok(Coupon {
            id: coupon_id,
            campaign_id: self.info.id,
            user_id: user.clone(),
            issued_at: now,
        })
    }

    pub fn expire_idempotency_keys(&mut self, now: UnixMillis, retention: Duration) {
        self.idempotency.expire(now, retention);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn book(quantity: u64, per_user_limit: u64) -> CampaignBook {
        let info = CampaignInfo {
            id: CampaignId(1),
            name: "c".into(),
            per_user_limit,
            discount: Discount::Percent(10),
            starts_at: None,
            ends_at: None,
            created_at: UnixMillis(0),
        };
        let stock = CampaignStock {
            quantity,
            issued: 0,
        };
        CampaignBook::restore(info, stock, HashMap::new()).unwrap()
    }

    #[test]
    fn window_limit_and_sold_out_refuse() {
        let mut b = book(2, 1);
        let a = UserId::parse("a").unwrap();
        let c = UserId::parse("c").unwrap();
        let d = UserId::parse("d").unwrap();
        let now = UnixMillis(5);
        assert!(matches!(
            b.issue_coupon(CouponId::generate(), &a, None, now),
            Decision::Made(_)
        ));
        assert_eq!(
            b.issue_coupon(CouponId::generate(), &a, None, now),
            Decision::Refused(Refusal::IssueLimitReached)
        );
        assert!(matches!(
            b.issue_coupon(CouponId::generate(), &c, None, now),
            Decision::Made(_)
        ));
        assert_eq!(
            b.issue_coupon(CouponId::generate(), &d, None, now),
            Decision::Refused(Refusal::SoldOut)
        );
        b.info.starts_at = Some(UnixMillis(10));
        assert_eq!(
            b.issue_coupon(CouponId::generate(), &d, None, now),
            Decision::Refused(Refusal::CampaignNotActive)
        );
    }

    #[test]
    fn a_key_replays_its_coupon() {
        let mut b = book(5, 3);
        let a = UserId::parse("a").unwrap();
        let key = IdempotencyKey::parse("k").unwrap();
        let Decision::Made(first) =
            b.issue_coupon(CouponId::generate(), &a, Some(&key), UnixMillis(0))
        else {
            panic!("first issue refused");
        };
        let again = b.issue_coupon(CouponId::generate(), &a, Some(&key), UnixMillis(1));
        assert_eq!(again, Decision::Answered(Ok(first)));
        assert_eq!(b.stock().issued, 1);
    }

    proptest! {
        #[test]
        fn never_issues_more_than_quantity_or_limit(
            quantity in 0u64..50,
            limit in 1u64..4,
            requests in proptest::collection::vec((0u8..10, proptest::option::of(0u8..5)), 0..200),
        ) {
            let mut b = book(quantity, limit);
            let mut made_per_user: HashMap<u8, u64> = HashMap::new();
            for (user, key) in requests {
                let uid = UserId::parse(&format!("u{user}")).unwrap();
                let key = key.map(|k| IdempotencyKey::parse(&format!("k{k}")).unwrap());
                if let Decision::Made(_) = b.issue_coupon(CouponId::generate(), &uid, key.as_ref(), UnixMillis(0)) {
                    *made_per_user.entry(user).or_default() += 1;
                }
                prop_assert!(b.stock().is_consistent());
            }
            let made: u64 = made_per_user.values().sum();
            prop_assert_eq!(made, b.stock().issued);
            prop_assert!(made <= quantity);
            prop_assert!(made_per_user.values().all(|n| *n <= limit));
        }
    }
}
