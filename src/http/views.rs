//! The JSON shapes the API sends (API.md): one struct per resource, built from
//! domain types.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::time::Rfc3339;
use crate::domain::{
    CampaignInfo, CampaignStock, Coupon, CouponId, Order, OrderId, ProductInfo, ProductStock,
    UserId,
};

/// A value sent as a JSON string, written from a buffer on the stack (or
/// borrowed from the value) straight into the reply: no `String`, and no
/// formatting machinery, for the ids and instants every order carries.
#[derive(Debug)]
pub struct Text<T>(pub T);

/// What [`Text`] can send.
pub trait AsText {
    fn text<'a>(&'a self, buffer: &'a mut [u8; 64]) -> &'a str;
}

impl<T: AsText> Serialize for Text<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.text(&mut [0u8; 64]))
    }
}

impl AsText for Rfc3339 {
    fn text<'a>(&'a self, buffer: &'a mut [u8; 64]) -> &'a str {
        self.write(buffer)
    }
}

impl AsText for UserId {
    fn text<'a>(&'a self, _: &'a mut [u8; 64]) -> &'a str {
        self.as_str()
    }
}

fn ulid_text(id: ulid::Ulid, buffer: &mut [u8; 64]) -> &str {
    let (ulid, _) = buffer
        .split_first_chunk_mut::<{ ulid::ULID_LEN }>()
        .expect("64 > 26");
    id.array_to_str(ulid)
}

impl AsText for OrderId {
    fn text<'a>(&'a self, buffer: &'a mut [u8; 64]) -> &'a str {
        ulid_text(self.0, buffer)
    }
}

impl AsText for CouponId {
    fn text<'a>(&'a self, buffer: &'a mut [u8; 64]) -> &'a str {
        ulid_text(self.0, buffer)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductBody {
    #[schema(minimum = 1)]
    pub id: u64,
    pub name: String,
    pub price: u64,
    pub total_stock: u64,
    pub stock_available: u64,
    pub stock_reserved: u64,
    pub sold: u64,
    pub written_off: u64,
    pub per_user_limit: Option<u64>,
    #[schema(value_type = Option<String>)]
    pub sale_starts_at: Option<Text<Rfc3339>>,
    #[schema(value_type = Option<String>)]
    pub sale_ends_at: Option<Text<Rfc3339>>,
    pub views: u64,
    #[schema(value_type = String)]
    pub created_at: Text<Rfc3339>,
}

impl From<(ProductInfo, ProductStock)> for ProductBody {
    fn from((info, stock): (ProductInfo, ProductStock)) -> Self {
        ProductBody {
            id: info.id.0,
            name: info.name,
            price: info.price,
            total_stock: stock.total,
            stock_available: stock.available,
            stock_reserved: stock.reserved,
            sold: stock.sold,
            written_off: stock.written_off,
            per_user_limit: info.per_user_limit,
            sale_starts_at: info.sale_starts_at.map(|t| Text(t.rfc3339())),
            sale_ends_at: info.sale_ends_at.map(|t| Text(t.rfc3339())),
            views: info.views,
            created_at: Text(info.created_at.rfc3339()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderBody {
    #[schema(value_type = String)]
    pub id: Text<OrderId>,
    #[schema(value_type = String)]
    pub user_id: Text<UserId>,
    pub product_id: u64,
    pub quantity: u64,
    pub unit_price: u64,
    pub amount: u64,
    #[schema(value_type = String, example = "PENDING_PAYMENT",
        pattern = "^(PENDING_PAYMENT|PAID|PAYMENT_FAILED|EXPIRED|CANCELLED|SHIPPED|DELIVERED|RETURN_REQUESTED|RETURNED)$")]
    pub status: &'static str,
    #[schema(value_type = String)]
    pub created_at: Text<Rfc3339>,
    #[schema(value_type = String)]
    pub updated_at: Text<Rfc3339>,
    #[schema(value_type = String)]
    pub expires_at: Text<Rfc3339>,
}

impl From<Order> for OrderBody {
    fn from(order: Order) -> Self {
        let amount = order.amount();
        OrderBody {
            id: Text(order.id),
            user_id: Text(order.user_id),
            product_id: order.product_id.0,
            quantity: order.quantity,
            unit_price: order.unit_price,
            amount,
            status: order.status.as_str(),
            created_at: Text(order.created_at.rfc3339()),
            updated_at: Text(order.updated_at.rfc3339()),
            expires_at: Text(order.expires_at.rfc3339()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiscountBody {
    #[schema(value_type = String, pattern = "^(fixed|percent)$")]
    pub kind: &'static str,
    pub value: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignBody {
    pub id: u64,
    pub name: String,
    pub quantity: u64,
    pub issued: u64,
    pub remaining: u64,
    pub per_user_limit: u64,
    pub discount: DiscountBody,
    #[schema(value_type = Option<String>)]
    pub starts_at: Option<Text<Rfc3339>>,
    #[schema(value_type = Option<String>)]
    pub ends_at: Option<Text<Rfc3339>>,
    #[schema(value_type = String)]
    pub created_at: Text<Rfc3339>,
}

impl From<(CampaignInfo, CampaignStock)> for CampaignBody {
    fn from((info, stock): (CampaignInfo, CampaignStock)) -> Self {
        CampaignBody {
            id: info.id.0,
            name: info.name,
            quantity: stock.quantity,
            issued: stock.issued,
            remaining: stock.remaining(),
            per_user_limit: info.per_user_limit,
            discount: DiscountBody {
                kind: info.discount.kind(),
                value: info.discount.value(),
            },
            starts_at: info.starts_at.map(|t| Text(t.rfc3339())),
            ends_at: info.ends_at.map(|t| Text(t.rfc3339())),
            created_at: Text(info.created_at.rfc3339()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CouponBody {
    #[schema(value_type = String)]
    pub id: Text<CouponId>,
    pub campaign_id: u64,
    #[schema(value_type = String)]
    pub user_id: Text<UserId>,
    #[schema(value_type = String)]
    pub issued_at: Text<Rfc3339>,
}

impl From<Coupon> for CouponBody {
    fn from(coupon: Coupon) -> Self {
        CouponBody {
            id: Text(coupon.id),
            campaign_id: coupon.campaign_id.0,
            user_id: Text(coupon.user_id),
            issued_at: Text(coupon.issued_at.rfc3339()),
        }
    }
}
