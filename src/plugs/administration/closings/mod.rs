//! `administration.closings`: the Z closing of a business day, month or year, computed from the
//! documents, with perpetual grand totals, chained to the closing before it and signed with the
//! instance's ed25519 key; closed periods refuse writes (in the database); and
//! `plugpos closing verify`, which checks them all again.

pub mod http;
pub mod pdf;
pub mod period;
pub mod report;
pub mod reports;
pub mod store;
pub mod verify;

use futures_util::FutureExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission, Topic, Verifier};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "administration.closings";

pub const CREATE: &str = "administration.closings.create";
pub const READ: &str = "administration.closings.read";

/// When a business day starts (`HH:MM`, business timezone).
pub const DAY_STARTS_AT: &str = "closing.day_starts_at";
pub const DEFAULT_DAY_START: &str = "00:00";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: CREATE,
        description: "Make the Z closing of a day, month or year (final)",
        roles: &["manager"],
    },
    ModulePermission {
        name: READ,
        description: "See closings and their Z reports",
        roles: &["manager", "accountant", "auditor"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "administration.places",
        requirement: "^1",
    },
    Dependency {
        id: "operations.sales",
        requirement: "^1",
    },
    Dependency {
        id: "operations.returns",
        requirement: "^1",
    },
    Dependency {
        id: "operations.cash",
        requirement: "^1",
    },
    Dependency {
        id: "management.stock",
        requirement: "^1",
    },
    Dependency {
        id: "operations.receipts",
        requirement: "^1",
    },
];

const TOPICS: &[Topic] = &[Topic {
    name: "closings",
    permission: READ,
    description: "closing.created",
}];

/// `HH:MM`.
fn day_start_rule(value: &serde_json::Value) -> Result<(), String> {
    value
        .as_str()
        .and_then(period::parse_day_start)
        .map(drop)
        .ok_or_else(|| "must be a time of day, HH:MM (24-hour clock)".to_owned())
}

const SETTINGS: &[Setting] = &[Setting::new(
    DAY_STARTS_AT,
    SettingType::Text { max_chars: 5 },
    DefaultValue::Text(DEFAULT_DAY_START),
    "When a business day starts (HH:MM, business timezone): a bar open past midnight closes one business day.",
)
.with_reason()
.with_rule(day_start_rule)];

const VERIFIERS: &[Verifier] = &[Verifier {
    name: "closing",
    run: |pool, keys, _args| verify::verify(pool, keys).boxed(),
}];

/// The module.
pub struct Closings;

impl Module for Closings {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Z closings of days, months and years, signed and chained; closed periods"
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

    fn tables(&self) -> &'static [&'static str] {
        &["closings"]
    }

    fn reports(&self) -> &'static [crate::core::reports::Report] {
        reports::REPORTS
    }

    fn verifiers(&self) -> &'static [Verifier] {
        VERIFIERS
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(Access::Permission(CREATE), routes!(http::create)))
            .routes(declare(Access::Permission(READ), routes!(http::list)))
            .routes(declare(Access::Permission(READ), routes!(http::verify_all)))
            .routes(declare(Access::Permission(READ), routes!(http::get)))
            .routes(declare(Access::Permission(READ), routes!(http::report_of)))
    }
}
