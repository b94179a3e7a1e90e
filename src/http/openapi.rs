//! The OpenAPI 3 document served at `GET /openapi.json`, generated from the
//! handlers' annotations so that it describes what the server does.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{campaigns, ops, orders, products};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flashstock",
        description = "Inventory engine for flash sales: limited-stock products and \
                       first-come coupon campaigns. Errors are application/problem+json \
                       with a stable `code`."
    ),
    paths(
        products::create, products::list, products::get, products::update,
        products::change_stock,
        orders::create, orders::list, orders::get, orders::pay, orders::cancel,
        orders::request_return, orders::complete_return,
        campaigns::create, campaigns::get, campaigns::issue, campaigns::list_coupons,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "products"), (name = "orders"), (name = "campaigns"), (name = "operations"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Follow-up operations of created resources, for clients and for stateful
/// API testing: (operation, its 201 response, linked operation).
const LINKS: &[(&str, &str)] = &[
    ("create_order", "get_order"),
    ("create_order", "pay_order"),
    ("create_order", "cancel_order"),
    ("create_order", "return_order"),
    ("create_order", "complete_return"),
    ("create_product", "get_product"),
    ("create_product", "update_product"),
    ("create_product", "change_stock"),
    ("create_campaign", "get_campaign"),
    ("create_campaign", "issue_coupon"),
];

/// The document as served: the generated one with this deployment's
/// `max_quantity_per_order` as the order quantity's maximum, and links from
/// created resources to what can be done with them.
pub fn document(max_quantity_per_order: u32) -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    let quantity = doc
        .pointer_mut("/components/schemas/CreateOrder/properties/quantity")
        .expect("CreateOrder has a quantity");
    quantity["maximum"] = max_quantity_per_order.into();
    let paths = doc["paths"].as_object_mut().expect("paths");
    let created: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .filter_map(move |(method, op)| {
                    let id = op.get("operationId")?.as_str()?;
                    Some((id.to_string(), format!("{path} {method}")))
                })
        })
        .collect();
    for (from, to) in LINKS {
        let (_, location) = created
            .iter()
            .find(|(id, _)| id == from)
            .expect("linked operations exist");
        let (path, method) = location.split_once(' ').expect("path and method");
        let response = paths[path][method]["responses"]["201"]
            .as_object_mut()
            .expect("a created response");
        let links = response
            .entry("links")
            .or_insert_with(|| serde_json::json!({}));
        links[*to] = serde_json::json!({
            "operationId": to,
            "parameters": {"id": "$response.body#/id"},
        });
    }
    // An order needs a product: a created product can be ordered.
    paths["/v1/products"]["post"]["responses"]["201"]["links"]["create_order"] = serde_json::json!({
        "operationId": "create_order",
        "requestBody": {"product_id": "$response.body#/id", "quantity": 1},
    });
    doc.to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_links_created_resources_and_bounds_quantity() {
        let doc: serde_json::Value = serde_json::from_str(&super::document(7)).unwrap();
        assert_eq!(
            doc.pointer("/components/schemas/CreateOrder/properties/quantity/maximum"),
            Some(&serde_json::json!(7))
        );
        let links = doc
            .pointer("/paths/~1v1~1orders/post/responses/201/links")
            .unwrap();
        assert_eq!(links["pay_order"]["operationId"], "pay_order");
        assert_eq!(doc["paths"].as_object().unwrap().len(), 16);
    }
}
