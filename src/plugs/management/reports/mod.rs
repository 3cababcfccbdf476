//! `management.reports`: the report registry and the dashboard. Modules declare reports and
//! KPIs (`Module::reports`, `Module::kpis`, `core::reports`); this module lists them, checks a
//! run's parameters, runs it, names what its rows refer to, hides the columns the caller may not
//! see and renders JSON, CSV or PDF (exports are audited), and keeps the dashboard: KPI values
//! computed when due and pushed on the `dashboard` WebSocket topic when they change.

pub mod dashboard;
pub mod http;
pub mod names;
pub mod params;
pub mod render;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission, Topic};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "management.reports";

pub use crate::core::reports::{DASHBOARD, RUN as READ};

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: READ,
        description: "Run reports and export them (each report may need more, e.g. customers)",
        roles: &["manager", "accountant"],
    },
    ModulePermission {
        name: DASHBOARD,
        description: "See the dashboard's KPIs and subscribe to the `dashboard` topic",
        roles: &["manager", "accountant"],
    },
];

const TOPICS: &[Topic] = &[Topic {
    name: dashboard::TOPIC,
    permission: DASHBOARD,
    description: "dashboard.updated: the KPI values that changed (at most one push a second), only those the subscriber may see",
}];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "administration.places",
        requirement: "^1",
    },
    Dependency {
        id: "administration.closings",
        requirement: "^1",
    },
    Dependency {
        id: "management.catalog",
        requirement: "^1",
    },
    Dependency {
        id: "management.customers",
        requirement: "^1",
    },
];

/// The module.
pub struct Reports;

impl Module for Reports {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "The report registry (JSON, CSV, PDF) and the live dashboard"
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

    /// Starts the dashboard's pushing task with the server.
    fn install(&self, state: &AppState) {
        dashboard::Dashboard::of(state);
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(Access::Permission(READ), routes!(http::list)))
            .routes(declare(Access::Permission(READ), routes!(http::run)))
            .routes(declare(
                Access::Permission(DASHBOARD),
                routes!(http::dashboard),
            ))
    }
}
