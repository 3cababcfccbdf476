//! `operations.cash`: cash sessions per register (open with a float, cash in and out, close with
//! the counted amount: expected vs counted), and the X report.

pub mod http;
pub mod offline;
pub mod report;
pub mod reports;
pub mod rules;
pub mod store;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission, Topic};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "operations.cash";

pub const OPEN: &str = "operations.cash.open";
pub const CLOSE: &str = "operations.cash.close";
pub const MOVEMENT: &str = "operations.cash.movement";
pub const REPORT: &str = "operations.cash.report";
pub const MANAGE_ANY: &str = "operations.cash.manage_any";
pub const REPORT_ANY: &str = "operations.cash.report_any";
pub const NO_SALE: &str = "operations.cash.no_sale";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: OPEN,
        description: "Open a cash session on a register",
        roles: &["cashier", "manager"],
    },
    ModulePermission {
        name: CLOSE,
        description: "Close a cash session with the counted cash",
        roles: &["cashier", "manager"],
    },
    ModulePermission {
        name: MOVEMENT,
        description: "Record cash put into or taken out of a drawer",
        roles: &["cashier", "manager"],
    },
    ModulePermission {
        name: REPORT,
        description: "See cash sessions, and the X reports of one's own",
        roles: &["cashier", "manager", "accountant", "auditor"],
    },
    ModulePermission {
        name: MANAGE_ANY,
        description: "Sell into, record cash movements in and close any cashier's session, and see its X report while open",
        roles: &["manager"],
    },
    ModulePermission {
        name: NO_SALE,
        description: "Open the drawer without a sale without anyone's approval (others need a manager's)",
        roles: &["manager"],
    },
    ModulePermission {
        name: REPORT_ANY,
        description: "See the X report of any cashier's session, also while it is open",
        roles: &["manager", "accountant", "auditor"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "administration.places",
        requirement: "^1",
    },
    Dependency {
        id: "operations.approvals",
        requirement: "^1",
    },
];

const TOPICS: &[Topic] = &[Topic {
    name: "cash",
    permission: REPORT,
    description: "cash_session.opened, cash_session.movement, cash_session.no_sale, cash_session.closed",
}];

/// The module.
pub struct Cash;

const SETTINGS: &[Setting] = &[
    Setting::new(
        "cash.variance_reason_threshold",
        SettingType::Amount { positive: false, max: None },
        DefaultValue::Decimal("0"),
        "A cash variance at close larger than this (either way) needs a reason; 0: every variance does.",
    )
    .with_reason(),
    Setting::new(
        "cash.blind_close",
        SettingType::Bool,
        DefaultValue::Bool(true),
        "Feature switch: cashiers count the drawer without seeing what the server expects (their open session's X report is refused until it is closed).",
    )
    .with_reason(),
];

impl Module for Cash {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Cash sessions, cash movements and X reports"
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

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn push_kinds(&self) -> &'static [crate::core::sync::push::PushKind] {
        offline::KINDS
    }

    fn tables(&self) -> &'static [&'static str] {
        &["cash_sessions", "cash_movements"]
    }

    fn reports(&self) -> &'static [crate::core::reports::Report] {
        reports::REPORTS
    }

    fn kpis(&self) -> &'static [crate::core::reports::Kpi] {
        reports::KPIS
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(Access::Permission(OPEN), routes!(http::open)))
            .routes(declare(Access::Permission(REPORT), routes!(http::list)))
            .routes(declare(Access::Permission(REPORT), routes!(http::get)))
            .routes(declare(
                Access::Permission(MOVEMENT),
                routes!(http::movement),
            ))
            .routes(declare(Access::Permission(CLOSE), routes!(http::close)))
            // Cashiers without `operations.cash.no_sale` may ask, with a manager's approval.
            .routes(declare(
                Access::Permission(MOVEMENT),
                routes!(http::no_sale),
            ))
            .routes(declare(
                Access::Permission(REPORT),
                routes!(report::x_report),
            ))
    }
}
