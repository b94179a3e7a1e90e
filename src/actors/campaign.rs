//! `CampaignActor`: the one place a campaign's coupons are issued. Same shape as
//! `ProductActor`: admit, one `CampaignBook` call, submit, reply with a ticket.

use actix::{Actor, AsyncContext, Context, Handler, Message};

use super::NotDecided;
use super::core::ItemCore;
use super::product::Decided;
use crate::domain::idempotency::{Decision, IDEMPOTENCY_RETENTION};
use crate::domain::{
    CampaignBook, CampaignInfo, CampaignStock, Coupon, CouponId, IdempotencyKey, ItemKey,
    UnixMillis, UserId,
};
use crate::metrics as m;
use crate::persistence::writer::Ticket;
use crate::persistence::{KeyRecord, Mutation};

pub struct CampaignActor {
    book: CampaignBook,
    core: ItemCore,
}

#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<Decided<Coupon>, super::NotDecided>")]
pub struct IssueCoupon {
    pub user: UserId,
    pub key: Option<IdempotencyKey>,
}

#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<(CampaignInfo, CampaignStock), super::NotDecided>")]
pub struct GetCampaign;

#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
struct Tick;

impl CampaignActor {
    pub(crate) fn new(book: CampaignBook, core: ItemCore) -> Self {
        CampaignActor { book, core }
    }
}

impl Actor for CampaignActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.core.config.mailbox_capacity);
        ctx.run_interval(self.core.config.tick_interval, |_, ctx| {
            ctx.notify(Tick);
        });
    }
}

impl Handler<IssueCoupon> for CampaignActor {
    type Result = Result<Decided<Coupon>, NotDecided>;

    fn handle(&mut self, msg: IssueCoupon, ctx: &mut Self::Context) -> Self::Result {
        self.core.admit(ctx)?;
        let now = UnixMillis::now();
        let decision =
            self.book
                .issue_coupon(CouponId::generate(), &msg.user, msg.key.as_ref(), now);
        let key_record = |outcome| {
            Mutation::KeyRecorded(KeyRecord {
                item: ItemKey::Campaign(self.book.info.id),
                user: msg.user.clone(),
                key: msg.key.clone().expect("only keyed requests are recorded"),
                fingerprint: 0,
                outcome,
                recorded_at: now,
            })
        };
        let (outcome, mutations) = match decision {
            Decision::Made(coupon) => {
                let mut mutations = vec![
                    Mutation::CouponIssued(coupon.clone()),
                    Mutation::CampaignCounts {
                        id: self.book.info.id,
                        issued: self.book.stock().issued,
                    },
                ];
                if msg.key.is_some() {
                    mutations.push(key_record(Ok(coupon.id.to_string())));
                }
                (Ok(coupon), mutations)
            }
            Decision::Refused(refusal) if msg.key.is_some() => {
                (Err(refusal), vec![key_record(Err(refusal))])
            }
            Decision::Refused(refusal) => (Err(refusal), Vec::new()),
            Decision::Answered(outcome) => {
                let ticket = self.core.barrier();
                return Ok(Decided { outcome, ticket });
            }
        };
        m::COUPON_ISSUES.count(&outcome);
        let ticket = if mutations.is_empty() {
            Ticket::settled()
        } else {
            self.core.submit(mutations, ctx)?
        };
        Ok(Decided { outcome, ticket })
    }
}

impl Handler<GetCampaign> for CampaignActor {
    type Result = Result<(CampaignInfo, CampaignStock), NotDecided>;

    fn handle(&mut self, _: GetCampaign, ctx: &mut Self::Context) -> Self::Result {
        self.core.check_current(ctx)?;
        Ok((self.book.info.clone(), self.book.stock()))
    }
}

impl Handler<Tick> for CampaignActor {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        if self.core.is_stale() {
            self.core.retire(ctx);
            return;
        }
        self.book
            .expire_idempotency_keys(UnixMillis::now(), IDEMPOTENCY_RETENTION);
        if self.core.is_idle() {
            self.core.retire(ctx);
        }
    }
}
