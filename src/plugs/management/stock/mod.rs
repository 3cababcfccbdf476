//! `management.stock`: quantity on hand per product and location, adjustments with reasons, and
//! the stock ledger. Sales take their goods off through `management::api::stock`.

pub mod http;
pub mod put_back;
pub mod rules;
pub mod store;
pub mod take;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "management.stock";

pub const READ: &str = "management.stock.read";
pub const ADJUST: &str = "management.stock.adjust";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: READ,
        description: "See stock levels",
        roles: &["cashier", "manager", "accountant", "auditor"],
    },
    ModulePermission {
        name: ADJUST,
        description: "Adjust stock (received goods, counts, damage)",
        roles: &["manager"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "management.catalog",
        requirement: "^1",
    },
    Dependency {
        id: "administration.places",
        requirement: "^1",
    },
];

/// The module.
pub struct Stock;

impl Module for Stock {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Stock per location, adjustments and the stock ledger"
    }

    fn dependencies(&self) -> &'static [Dependency] {
        DEPENDENCIES
    }

    fn permissions(&self) -> &'static [ModulePermission] {
        PERMISSIONS
    }

    fn tables(&self) -> &'static [&'static str] {
        &["stock_levels", "stock_movements", "stock_ledger"]
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(Access::Permission(READ), routes!(http::levels)))
            .routes(declare(Access::Permission(ADJUST), routes!(http::adjust)))
    }
}
