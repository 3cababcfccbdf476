//! `administration.incidents`: suspicious-pattern flags (rules over each cashier's business day,
//! run after each return, void, discounted sale and no-sale, and hourly; each hit a flag, an
//! audit record and a security event) and incident notes (append-only).

pub mod http;
pub mod review;
pub mod rules;
pub mod store;

use futures_util::FutureExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::jobs::runner::Handler;
use crate::core::jobs::schedule::ScheduledJob;
use crate::core::modules::{Dependency, Module, ModulePermission};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;
use crate::plugs::operations::api::cash::REVIEW;

pub(crate) const MODULE: &str = "administration.incidents";

pub const READ: &str = "administration.incidents.read";
pub const WRITE: &str = "administration.incidents.write";

/// The thresholds' keys.
pub mod settings {
    pub const MAX_CORRECTIONS: &str = "flags.max_corrections_per_day";
    pub const MAX_CORRECTIONS_PERCENT: &str = "flags.max_corrections_percent";
    pub const DISCOUNT_PERCENT: &str = "flags.discount_percent_above";
    pub const OPENING_HOURS: &str = "flags.opening_hours";
    pub const VOID_MINUTES: &str = "flags.void_after_exact_cash_minutes";
}

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: READ,
        description: "See suspicious-pattern flags and incident notes",
        roles: &["manager", "auditor"],
    },
    ModulePermission {
        name: WRITE,
        description: "Write incident notes",
        roles: &["manager", "auditor"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "administration.closings",
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
];

fn hours_rule(value: &serde_json::Value) -> Result<(), String> {
    rules::parse_hours(value.as_str().unwrap_or_default()).map(drop)
}

const SETTINGS: &[Setting] = &[
    Setting::new(
        settings::MAX_CORRECTIONS,
        SettingType::Integer { min: 1, max: 10_000 },
        DefaultValue::Integer(5),
        "A cashier with more returns and voids than this in a business day is flagged.",
    ),
    Setting::new(
        settings::MAX_CORRECTIONS_PERCENT,
        SettingType::Integer { min: 1, max: 1000 },
        DefaultValue::Integer(20),
        "A cashier whose returns and voids are worth more than this percent of their sales in a business day is flagged.",
    ),
    Setting::new(
        settings::DISCOUNT_PERCENT,
        SettingType::Integer { min: 1, max: 100 },
        DefaultValue::Integer(30),
        "A sale discounted by more than this percent of its amount before discounts is flagged.",
    ),
    Setting::new(
        settings::OPENING_HOURS,
        SettingType::Text { max_chars: 11 },
        DefaultValue::Text("off"),
        "Opening hours, HH:MM-HH:MM in the business timezone (may pass midnight); sales and no-sales outside them are flagged. off: no opening hours.",
    )
    .with_rule(hours_rule),
    Setting::new(
        settings::VOID_MINUTES,
        SettingType::Integer { min: 0, max: 1440 },
        DefaultValue::Integer(10),
        "A void within this many minutes of the cashier's own sale paid exactly in cash is flagged; 0: off.",
    ),
];

/// The module.
pub struct Incidents;

impl Module for Incidents {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Suspicious-pattern flags and incident notes"
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
        &["flags", "incidents"]
    }

    fn jobs(&self) -> Vec<Handler> {
        vec![
            Handler::new(REVIEW, |ctx| review::review_job(ctx).boxed()),
            Handler::new(review::SWEEP, |ctx| review::sweep_job(ctx).boxed()),
        ]
    }

    fn schedules(&self) -> Vec<ScheduledJob> {
        vec![ScheduledJob {
            name: "flags",
            job: review::SWEEP,
            payload: serde_json::json!({}),
        }]
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(Access::Permission(READ), routes!(http::flags)))
            .routes(declare(
                Access::Permission(WRITE),
                routes!(http::create_incident),
            ))
            .routes(declare(Access::Permission(READ), routes!(http::incidents)))
    }
}
