//! `operations.returns`: returns (refunds) against the original sale, or without a receipt with
//! a manager's approval, and voids (the reversal of a sale while its session is open). Each is a
//! numbered document of its own in the register's correction series, never a change to the
//! sale: the database refuses changes to it, and a sale line never gives back more than it sold.

pub mod batch;
pub mod http;
pub mod offline;
pub mod reports;
pub mod rules;
pub mod store;
pub mod writer;

use futures_util::FutureExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission, Topic};
use crate::core::state::AppState;
use crate::plugs::management::api::customers::{DocumentSource, ReturnsOfCustomers};
use crate::plugs::operations::api::cash::SessionRefundsSource;
use crate::plugs::operations::api::sales::CorrectionsSource;

pub(crate) const MODULE: &str = "operations.returns";

pub const CREATE: &str = "operations.returns.create";
pub const WITHOUT_RECEIPT: &str = "operations.returns.without_receipt";
pub const READ: &str = "operations.returns.read";
/// The sales module's permission to void (the void is a document of this module).
pub const VOID: &str = "operations.sales.void";
/// Who may ask for a return or a void at all: those who sell.
const SELL: &str = "operations.sales.create";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: CREATE,
        description: "Take goods back against their sale without anyone's approval (others need a manager's)",
        roles: &["manager"],
    },
    ModulePermission {
        name: WITHOUT_RECEIPT,
        description: "Approve returns without a receipt (they always need an approval)",
        roles: &["manager"],
    },
    ModulePermission {
        name: READ,
        description: "See returns and voids",
        roles: &["cashier", "manager", "accountant", "auditor"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "management.customers",
        requirement: "^1",
    },
    Dependency {
        id: "operations.sales",
        requirement: "^1",
    },
    Dependency {
        id: "operations.cash",
        requirement: "^1",
    },
    Dependency {
        id: "operations.approvals",
        requirement: "^1",
    },
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

const TOPICS: &[Topic] = &[Topic {
    name: "returns",
    permission: READ,
    description: "return.completed, sale.voided",
}];

/// The module.
pub struct Returns;

impl Module for Returns {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Returns against the original sale, and voids"
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

    fn push_kinds(&self) -> &'static [crate::core::sync::push::PushKind] {
        offline::KINDS
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "returns",
            "return_lines",
            "return_counters",
            "returned_quantities",
            "returned_taxes",
        ]
    }

    fn reports(&self) -> &'static [crate::core::reports::Report] {
        reports::REPORTS
    }

    fn kpis(&self) -> &'static [crate::core::reports::Kpi] {
        reports::KPIS
    }

    fn install(&self, state: &AppState) {
        batch::compose_statements();
        state.provide(CorrectionsSource(|conn, id, scale| {
            store::corrections(conn, id, scale).boxed()
        }));
        state.provide(SessionRefundsSource(|conn, id| {
            store::session_refunds(conn, id).boxed()
        }));
        state.provide(ReturnsOfCustomers(DocumentSource {
            documents: |conn, customer, before, limit| {
                store::customer_documents(conn, customer, before, limit).boxed()
            },
            latest: |conn| store::customers_latest(conn).boxed(),
        }));
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        // Those who sell may ask; without the action's permission they need an approval.
        OpenApiRouter::new()
            .routes(declare(Access::Permission(SELL), routes!(http::create)))
            .routes(declare(Access::Permission(SELL), routes!(http::void)))
            .routes(declare(Access::Permission(READ), routes!(http::list)))
            .routes(declare(Access::Permission(READ), routes!(http::get)))
    }
}
