//! The module registry. Every domain module (the unit a plug is made of) implements [`Module`]
//! and is registered at startup: the registry checks the dependency graph, records module
//! versions in the database, assembles the router and the OpenAPI document, and lets an admin
//! enable or disable modules per business. Core is not a module and cannot be disabled.
//!

pub mod http;
pub mod registry;

use futures_util::future::BoxFuture;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::core::audit::AuditedTx;
use crate::core::state::AppState;

pub use crate::core::audit::ProtectedField;
pub use crate::core::auth::permissions::ModulePermission;
pub use crate::core::live::Topic;

pub use registry::{ModuleStates, Registry, RegistryError};

/// A dependency on another module, with a semver requirement on its version (`"^1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependency {
    pub id: &'static str,
    pub requirement: &'static str,
}

/// What a module creates at first-run setup (its defaults, such as the first register), inside
/// setup's audited transaction, after the business and its settings and before the roles. It
/// answers what it created; setup records each in the audit log (under setup's own module, with
/// the rest of what setup did) and carries the ids in its answer.
pub type Seed = for<'a> fn(&'a mut AuditedTx) -> BoxFuture<'a, anyhow::Result<Vec<Seeded>>>;

/// One row a [`Seed`] created.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Its id's name in setup's answer (`"register_id"`).
    pub name: &'static str,
    /// The audit record's entity and action (`"register"`, `"register.create"`).
    pub entity: &'static str,
    pub action: &'static str,
    pub id: Uuid,
    /// The audit record's `after`.
    pub after: serde_json::Value,
}

/// A check a module offers the command line (`plugpos closing verify` runs the one named
/// `closing`, `plugpos receipt verify CODE` the one named `receipt` with `[CODE]`): it reads the
/// database (and the instance's keys) and says what it found.
#[derive(Clone, Copy)]
pub struct Verifier {
    /// The command group that runs it (`closing`).
    pub name: &'static str,
    pub run: VerifyFn,
}

/// Runs a [`Verifier`] over the database and the keys directory, with the command's arguments.
pub type VerifyFn = for<'a> fn(
    &'a sqlx::PgPool,
    &'a std::path::Path,
    &'a [String],
) -> BoxFuture<'a, anyhow::Result<Verified>>;

/// What a verifier found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verified {
    /// Nothing wrong.
    pub ok: bool,
    /// How many items it checked.
    pub checked: usize,
    /// Each problem, in words an admin acts on.
    pub problems: Vec<String>,
}

/// One domain module. Its manifest (`mod.rs`) says what it is (id, version), what it needs
/// (dependencies), what it guards (permissions), what it serves (routes, topics), what it
/// owns (tables) and what it creates at setup (seed). See docs/ARCHITECTURE.md, "The module shape".
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
    /// Fields of its audited entities only some readers may see (the audit log redacts them).
    fn protected_fields(&self) -> &'static [ProtectedField] {
        &[]
    }
    /// Its routes, each registered through `core::auth::access::declare`.
    fn routes(&self) -> OpenApiRouter<AppState>;
    /// WebSocket topics it publishes, each readable with one of its own permissions.
    fn topics(&self) -> &'static [Topic] {
        &[]
    }
    /// The tables and views it owns: only its own files name them in SQL; other modules reach
    /// them through its `api` (the architecture test reads the sources to hold this).
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    /// The business settings it reads, each declared with its type, default, constraints and
    /// who may change it (see `core::settings::registry`).
    fn settings(&self) -> &'static [crate::core::settings::Setting] {
        &[]
    }
    /// What it creates at first-run setup, if anything.
    fn seed(&self) -> Option<Seed> {
        None
    }
    /// Called once when the application state is made: the place to hand other modules what
    /// they need from this one through [`AppState::provide`]. It must not keep the state.
    fn install(&self, _state: &AppState) {}

    /// The background jobs it runs (their handlers).
    fn jobs(&self) -> Vec<crate::core::jobs::runner::Handler> {
        Vec::new()
    }

    /// Its jobs that run on a schedule (each named by its entry under `[schedules]`).
    fn schedules(&self) -> Vec<crate::core::jobs::schedule::ScheduledJob> {
        Vec::new()
    }

    /// The checks it offers the command line (see [`Verifier`]).
    fn verifiers(&self) -> &'static [Verifier] {
        &[]
    }

    /// The reports it offers (`management.reports` runs them; `core::reports`).
    fn reports(&self) -> &'static [crate::core::reports::Report] {
        &[]
    }

    /// The dashboard figures it offers.
    fn kpis(&self) -> &'static [crate::core::reports::Kpi] {
        &[]
    }

    /// The permissions whose holders approve others' actions with their PIN (`operations.approvals`):
    /// their PIN is never shipped to tills as an offline verifier.
    fn approver_permissions(&self) -> &'static [&'static str] {
        &[]
    }

    /// What tills cache of its data, served by the change feed (`core::sync`).
    fn sync_entities(&self) -> &'static [crate::core::sync::SyncEntity] {
        &[]
    }

    /// The documents tills push after working offline (`POST /api/v1/sync/push`) that it records.
    fn push_kinds(&self) -> &'static [crate::core::sync::push::PushKind] {
        &[]
    }

    /// The consistency checks it adds to `plugpos doctor` (and the support bundle's
    /// `doctor.json`): each runs over the database with no arguments; a problem is a FAIL.
    fn doctor_checks(&self) -> &'static [Verifier] {
        &[]
    }
}

impl AppState {
    /// The registered modules.
    pub fn registry(&self) -> &Registry {
        self.part::<std::sync::Arc<Registry>>()
    }

    /// Which modules are enabled.
    pub fn modules(&self) -> &ModuleStates {
        self.part()
    }
}
