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

impl OrderBody {
    /// The body as `serde_json` writes it, written directly: an order's 201 is
    /// on the path of every order placed, and serde_json escapes every key and
    /// value byte by byte (2.5k instructions an order, by callgrind) where only
    /// the user id can hold a character that needs it. A test holds the two to
    /// the same bytes.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut buffer = [0u8; 64];
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(b"{\"id\":\"");
        // Crockford base32: nothing to escape.
        out.extend_from_slice(self.id.0.text(&mut buffer).as_bytes());
        out.extend_from_slice(b"\",\"user_id\":");
        json_string(out, self.user_id.0.as_str());
        for (key, value) in [
            (&b",\"product_id\":"[..], self.product_id),
            (b",\"quantity\":", self.quantity),
            (b",\"unit_price\":", self.unit_price),
            (b",\"amount\":", self.amount),
        ] {
            out.extend_from_slice(key);
            out.extend_from_slice(digits.format(value).as_bytes());
        }
        // Upper-case letters and underscores.
        out.extend_from_slice(b",\"status\":\"");
        out.extend_from_slice(self.status.as_bytes());
        out.push(b'"');
        // Digits, signs and RFC 3339's letters and separators.
        for (key, instant) in [
            (&b",\"created_at\":\""[..], &self.created_at),
            (b",\"updated_at\":\"", &self.updated_at),
            (b",\"expires_at\":\"", &self.expires_at),
        ] {
            out.extend_from_slice(key);
            out.extend_from_slice(instant.0.text(&mut buffer).as_bytes());
            out.push(b'"');
        }
        out.push(b'}');
    }
}

/// `text` as a JSON string: copied between quotes when nothing in it needs
/// escaping, else written by serde_json.
fn json_string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, text).expect("a string serialises into a Vec");
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{OrderStatus, ProductId, UnixMillis};

    proptest! {
        /// The hand-written body is serde's, byte for byte: any user id (quotes,
        /// backslashes, control characters, any Unicode), any status, any
        /// instant (those `time` cannot write fall back to digits), any count.
        #[test]
        fn an_order_body_is_written_as_serde_writes_it(
            user in "\\PC{1,20}|[\\x00-\\x7f]{1,20}",
            status in 0..OrderStatus::ALL.len(),
            numbers in proptest::array::uniform4(any::<u64>()),
            instants in proptest::array::uniform3(prop_oneof![
                0i64..4_102_444_800_000,
                any::<i64>(),
            ]),
        ) {
            let user = UserId::parse(&user);
            prop_assume!(user.is_ok());
            let order = Order {
                id: OrderId::generate(),
                user_id: user.unwrap(),
                product_id: ProductId(numbers[0]),
                quantity: numbers[1],
                unit_price: numbers[2],
                status: OrderStatus::ALL[status],
                created_at: UnixMillis(instants[0]),
                updated_at: UnixMillis(instants[1]),
                expires_at: UnixMillis(instants[2]),
            };
            let body = OrderBody::from(order);
            let mut written = Vec::new();
            body.write_json(&mut written);
            let expected = serde_json::to_vec(&body).unwrap();
            prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
