//! The module registry. Every domain module (the unit a plug is made of) implements [`Module`]
//! and is registered at startup: the registry checks the dependency graph, records module
//! versions in the database, assembles the router and the OpenAPI document, and lets an admin
//! enable or disable modules per business. Core is not a module and cannot be disabled.
//!
//! Jobs and schedules, reports and KPIs join the trait with the scheduler and reporting issues.

pub mod registry;
pub mod routes;

use utoipa_axum::router::OpenApiRouter;

use crate::core::state::AppState;

pub use crate::core::live::Topic;

pub use registry::{ModuleStates, Registry, RegistryError};

/// A dependency on another module, with a semver requirement on its version (`"^1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    pub id: &'static str,
    pub requirement: &'static str,
}

/// A permission a module declares, and the built-in roles that start with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModulePermission {
    pub name: &'static str,
    pub description: &'static str,
    /// Built-in roles granted this permission at setup (super_admin always is).
    pub roles: &'static [&'static str],
}

/// One domain module.
pub trait Module: Send + Sync + 'static {
    /// `<plug>.<module>`, e.g. `administration.places`.
    fn id(&self) -> &'static str;
    /// Semantic version of the module.
    fn version(&self) -> &'static str;
    /// What it does, for the module list.
    fn description(&self) -> &'static str;
    /// Modules this one needs (they must be present, compatible and enabled).
    fn dependencies(&self) -> &'static [Dependency] {
        &[]
    }
    /// The permissions its routes check.
    fn permissions(&self) -> &'static [ModulePermission] {
        &[]
    }
    /// Its routes, each registered through `core::auth::access::declare`.
    fn routes(&self) -> OpenApiRouter<AppState>;
    /// WebSocket topics it publishes, each readable with one of its own permissions.
    fn topics(&self) -> &'static [Topic] {
        &[]
    }
}
