//! `operations.sales`: idempotent sale creation (server-computed totals, taxes and change,
//! gap-free receipt numbers per register, stock taken off in the same transaction), and reading
//! sales back. A completed sale is immutable (the database refuses changes).

mod columns;
pub mod http;
pub mod prepare;
pub mod pricing;
pub mod record;
pub mod store;
pub mod writer;

use futures_util::FutureExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission, Topic};
use crate::core::state::AppState;
use crate::plugs::operations::api::cash::SessionSalesSource;

pub const CREATE: &str = "operations.sales.create";
pub const READ: &str = "operations.sales.read";
pub const PRICE_OVERRIDE: &str = "operations.sales.price_override";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: CREATE,
        description: "Ring up sales and take payments",
        roles: &["cashier", "manager"],
    },
    ModulePermission {
        name: READ,
        description: "See sales",
        roles: &["cashier", "manager", "accountant", "auditor"],
    },
    ModulePermission {
        name: PRICE_OVERRIDE,
        description: "Sell at a price other than the catalog's",
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
        id: "operations.cash",
        requirement: "^1",
    },
    Dependency {
        id: "administration.places",
        requirement: "^1",
    },
];

const TOPICS: &[Topic] = &[Topic {
    name: "sales",
    permission: READ,
    description: "sale.completed",
}];

/// The module.
pub struct Sales;

impl Module for Sales {
    fn id(&self) -> &'static str {
        "operations.sales"
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Sales with idempotent creation and gap-free receipt numbers"
    }

    fn dependencies(&self) -> &'static [Dependency] {
        DEPENDENCIES
    }

    fn permissions(&self) -> &'static [ModulePermission] {
        PERMISSIONS
    }

    fn topics(&self) -> &'static [Topic] {
        TOPICS
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "sales",
            "sale_lines",
            "sale_payments",
            "sale_taxes",
            "receipt_counters",
        ]
    }

    /// Gives the cash module a session's sales (cash cannot depend on sales: sales depend on it).
    fn install(&self, state: &AppState) {
        record::compose_statement();
        state.provide(SessionSalesSource(|conn, id| {
            store::session_sales(conn, id).boxed()
        }));
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(Access::Permission(CREATE), routes!(http::create)))
            .routes(declare(Access::Permission(READ), routes!(http::list)))
            .routes(declare(Access::Permission(READ), routes!(http::get)))
    }
}
