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

/// The document, rendered once.
pub fn document() -> &'static str {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the document serialises")
    })
}
