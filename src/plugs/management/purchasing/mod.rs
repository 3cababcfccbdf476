//! `management.purchasing`: suppliers (with their product codes and the last price paid),
//! purchase orders and the goods receipts against them. A receipt adds stock at the order's
//! location through `management::api::stock` and sets the product's cost price through
//! `management::api::catalog`, by the method of the setting `purchasing.cost_method` (the rules
//! in [`rules`]). Cost fields follow the cost price's field permission on every read path.

pub mod http;
pub mod rules;
pub mod store;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "management.purchasing";

pub const READ: &str = "management.purchasing.read";
pub const WRITE: &str = "management.purchasing.write";
pub const RECEIVE: &str = "management.purchasing.receive";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: READ,
        description: "See suppliers and purchase orders",
        roles: &["manager", "accountant"],
    },
    ModulePermission {
        name: WRITE,
        description: "Create and change suppliers and purchase orders",
        roles: &["manager"],
    },
    ModulePermission {
        name: RECEIVE,
        description: "Record goods received against purchase orders",
        roles: &["manager"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "management.catalog",
        requirement: "^1",
    },
    Dependency {
        id: "management.stock",
        requirement: "^1",
    },
    Dependency {
        id: "administration.places",
        requirement: "^1",
    },
];

fn cost_method(value: &serde_json::Value) -> Result<(), String> {
    match value.as_str() {
        Some(m) if rules::COST_METHODS.contains(&m) => Ok(()),
        _ => Err(format!("must be one of {}", rules::COST_METHODS.join(", "))),
    }
}

const SETTINGS: &[Setting] = &[
    Setting::new(
        "purchasing.cost_method",
        SettingType::Text { max_chars: 20 },
        DefaultValue::Text("moving_average"),
        "How a goods receipt sets the cost price: moving_average (stock on hand and what arrived, weighted by quantity) or last (the receipt's unit cost).",
    )
    .with_rule(cost_method),
    Setting::new(
        "purchasing.allow_over_receipt",
        SettingType::Bool,
        DefaultValue::Bool(false),
        "Feature switch: a goods receipt may bring more than was ordered (off: 422 purchase_order.over_receipt).",
    ),
];

/// The module.
pub struct Purchasing;

impl Module for Purchasing {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Suppliers, purchase orders and goods receipts"
    }

    fn dependencies(&self) -> &'static [Dependency] {
        DEPENDENCIES
    }

    fn permissions(&self) -> &'static [ModulePermission] {
        PERMISSIONS
    }

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "suppliers",
            "supplier_products",
            "purchase_order_counters",
            "purchase_orders",
            "purchase_order_lines",
            "goods_receipts",
            "goods_receipt_lines",
        ]
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        use Access::Permission;
        OpenApiRouter::new()
            .routes(declare(Permission(WRITE), routes!(http::suppliers::create)))
            .routes(declare(Permission(READ), routes!(http::suppliers::list)))
            .routes(declare(Permission(READ), routes!(http::suppliers::get)))
            .routes(declare(Permission(WRITE), routes!(http::suppliers::update)))
            .routes(declare(Permission(WRITE), routes!(http::suppliers::delete)))
            .routes(declare(Permission(WRITE), routes!(http::suppliers::supply)))
            .routes(declare(
                Permission(READ),
                routes!(http::suppliers::supplied),
            ))
            .routes(declare(Permission(WRITE), routes!(http::orders::create)))
            .routes(declare(Permission(READ), routes!(http::orders::list)))
            .routes(declare(Permission(READ), routes!(http::orders::get)))
            .routes(declare(Permission(WRITE), routes!(http::orders::order)))
            .routes(declare(Permission(WRITE), routes!(http::orders::cancel)))
            .routes(declare(Permission(RECEIVE), routes!(http::orders::receive)))
            .routes(declare(Permission(READ), routes!(http::orders::pdf)))
    }
}
