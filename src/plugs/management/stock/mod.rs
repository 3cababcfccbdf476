//! `management.stock`: quantity on hand per product and location, adjustments with reasons,
//! transfers between locations (with what is in transit), and the stock ledger, of which every
//! level is the sum (checked by `plugpos doctor`). Sales take their goods off through `management::api::stock`.

pub mod http;
pub mod low;
pub mod put_back;
pub mod reports;
pub mod rules;
pub mod store;
pub mod take;
pub mod transfer_rules;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission, Topic, Verified, Verifier};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "management.stock";

pub const READ: &str = "management.stock.read";
pub const ADJUST: &str = "management.stock.adjust";
pub const TRANSFER: &str = "management.stock.transfer";

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
    ModulePermission {
        name: TRANSFER,
        description: "Create, send, receive and cancel transfers between locations",
        roles: &["manager"],
    },
];

const TOPICS: &[Topic] = &[Topic {
    name: "stock",
    permission: READ,
    description: "stock.low",
}];

const DOCTOR_CHECKS: &[Verifier] = &[Verifier {
    name: "stock_ledger",
    run: |pool, _keys, _args| Box::pin(levels_are_their_movements(pool)),
}];

/// Every stock level must be the sum of its movements in the ledger (`plugpos doctor`).
async fn levels_are_their_movements(pool: &sqlx::PgPool) -> anyhow::Result<Verified> {
    let mut conn = pool.acquire().await?;
    let (checked, off) = store::ledger::levels_off_their_movements(&mut conn).await?;
    Ok(Verified {
        ok: off.is_empty(),
        checked: usize::try_from(checked).unwrap_or(0),
        problems: off
            .into_iter()
            .map(|(product, location, level, sum)| {
                format!("product {product} at location {location}: level {level}, movements add up to {sum}")
            })
            .collect(),
    })
}

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
        &[
            "stock_levels",
            "stock_movements",
            "stock_ledger",
            "stock_transfers",
            "stock_transfer_lines",
            "stock_transfer_counters",
            "stock_counts",
            "stock_count_products",
            "stock_count_lines",
        ]
    }

    fn reports(&self) -> &'static [crate::core::reports::Report] {
        reports::REPORTS
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(Access::Permission(READ), routes!(http::levels)))
            .routes(declare(Access::Permission(ADJUST), routes!(http::adjust)))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::ledger::movements),
            ))
            .routes(declare(
                Access::Permission(TRANSFER),
                routes!(http::transfers::create),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::transfers::list),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::transfers::get),
            ))
            .routes(declare(
                Access::Permission(TRANSFER),
                routes!(http::transfers::send),
            ))
            .routes(declare(
                Access::Permission(TRANSFER),
                routes!(http::transfers::receive),
            ))
            .routes(declare(
                Access::Permission(TRANSFER),
                routes!(http::transfers::cancel),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::transfers::in_transit),
            ))
            .routes(declare(
                Access::Permission(ADJUST),
                routes!(http::counts::create),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::counts::list),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::counts::get),
            ))
            .routes(declare(
                Access::Permission(ADJUST),
                routes!(http::counts::enter),
            ))
            .routes(declare(
                Access::Permission(ADJUST),
                routes!(http::counts::post),
            ))
            .routes(declare(
                Access::Permission(ADJUST),
                routes!(http::counts::cancel),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::counts::report),
            ))
            .routes(declare(
                Access::Permission(ADJUST),
                routes!(http::reorder::set),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::reorder::points),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::reorder::low),
            ))
    }

    fn topics(&self) -> &'static [Topic] {
        TOPICS
    }

    fn install(&self, state: &AppState) {
        low::start(state);
    }

    fn doctor_checks(&self) -> &'static [Verifier] {
        DOCTOR_CHECKS
    }
}
