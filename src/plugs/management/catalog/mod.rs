//! `management.catalog`: tax classes, the category tree and products (barcodes, search, the
//! field-protected cost price).

pub mod http;
pub mod store;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Module, ModulePermission, ProtectedField};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "management.catalog";

pub const READ: &str = "management.catalog.read";
pub const WRITE: &str = "management.catalog.write";
pub const COST_PRICE_READ: &str = "management.catalog.cost_price.read";
pub const COST_PRICE_WRITE: &str = "management.catalog.cost_price.write";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: READ,
        description: "Read the catalog (without cost prices)",
        roles: &["cashier", "manager", "accountant", "auditor"],
    },
    ModulePermission {
        name: WRITE,
        description: "Create and change catalog entries",
        roles: &["manager"],
    },
    ModulePermission {
        name: COST_PRICE_READ,
        description: "See cost prices",
        roles: &["manager", "accountant"],
    },
    ModulePermission {
        name: COST_PRICE_WRITE,
        description: "Set cost prices",
        roles: &["manager"],
    },
];

/// The module.
pub struct Catalog;

const SETTINGS: &[Setting] = &[Setting::new(
    "tax.prices_include_tax",
    SettingType::Bool,
    DefaultValue::Bool(true),
    "Feature switch: catalog prices include tax (gross, as shops price); off: prices are net and tax is added at the sale.",
)
.with_reason()];

impl Module for Catalog {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Tax classes, categories and products"
    }

    fn permissions(&self) -> &'static [ModulePermission] {
        PERMISSIONS
    }

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tax_classes", "categories", "products", "product_barcodes"]
    }

    fn sync_entities(&self) -> &'static [crate::core::sync::SyncEntity] {
        store::sync::ENTITIES
    }

    fn protected_fields(&self) -> &'static [ProtectedField] {
        &[ProtectedField {
            module: MODULE,
            entity: "product",
            field: "cost_price",
            permission: COST_PRICE_READ,
        }]
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(
                Access::Permission(READ),
                routes!(http::tax_classes::list),
            ))
            .routes(declare(
                Access::Permission(WRITE),
                routes!(http::tax_classes::create),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::categories::list),
            ))
            .routes(declare(
                Access::Permission(WRITE),
                routes!(http::categories::create),
            ))
            .routes(declare(
                Access::Permission(WRITE),
                routes!(http::categories::update),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::products::list),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::products::get),
            ))
            .routes(declare(
                Access::Permission(WRITE),
                routes!(http::products::create),
            ))
            .routes(declare(
                Access::Permission(WRITE),
                routes!(http::products::update),
            ))
            .routes(declare(
                Access::Permission(WRITE),
                routes!(http::products::remove),
            ))
    }
}
