//! Plain types and rules of the engine: ids, quantities, times, the order state
//! machine, and the two stock models (`ProductBook`, `CampaignBook`) whose methods
//! are the only way stock changes. Nothing here knows about actors, HTTP or SQL.

pub mod campaign;
pub mod idempotency;
pub mod ids;
pub mod order;
pub mod product;
pub mod refusal;
pub mod time;

pub use campaign::{CampaignBook, CampaignInfo, CampaignStock, Coupon, Discount};
pub use idempotency::IdempotencyLedger;
pub use ids::{
    CampaignId, CouponId, IdempotencyKey, InputError, ItemKey, OrderId, ProductId, Quantity, UserId,
};
pub use order::{Order, OrderEvent, OrderStatus, StockEffect};
pub use product::{ProductBook, ProductInfo, ProductPatch, ProductStock, Timing};
pub use refusal::Refusal;
pub use time::UnixMillis;
