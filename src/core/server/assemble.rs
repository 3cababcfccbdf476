//! Putting the application state together: the shared pieces and every capability's part.
//!
//! This is the top of core: it knows every capability, so that `core::state` knows none.

use std::sync::Arc;

use crate::core::auth::password::PasswordHashing;
use crate::core::auth::public_limit::PublicLimit;
use crate::core::auth::sealing::SecretSealing;
use crate::core::auth::tokens::SigningKey;
use crate::core::backup::DbTarget;
use crate::core::jobs::runner::Handlers;
use crate::core::jobs::schedule::{self, ScheduledJobs};
use crate::core::live::Hub;
use crate::core::modules::{ModuleStates, Registry};
use crate::core::state::{AppParts, AppState};

/// What the server (or a test harness) hands the capabilities besides the shared pieces.
pub struct Capabilities {
    /// Signs access tokens.
    pub signing_key: SigningKey,
    pub registry: Arc<Registry>,
    /// Which modules are enabled.
    pub modules: ModuleStates,
    /// The business database with the rights backups and restores need.
    pub backup_target: DbTarget,
}

/// Core's job handlers: backups and restore, audit verification, pruning.
pub fn job_handlers(modules: &Registry) -> Handlers {
    let mut list = crate::core::backup::jobs::handlers();
    list.extend(schedule::maintenance_handlers());
    list.extend(crate::core::webhooks::handlers());
    list.extend(modules.modules().iter().flat_map(|m| m.jobs()));
    Handlers::new(list)
}

/// The settings declared by core's capabilities and by the registered modules.
pub fn declared_settings(modules: &Registry) -> Result<crate::core::settings::Registry, String> {
    use crate::core::settings;
    settings::Registry::new(
        [
            ("core", settings::registry::CORE),
            ("core.backup", crate::core::backup::targets::SETTINGS),
            ("core.webhooks", crate::core::webhooks::SETTINGS),
        ]
        .into_iter()
        .chain(modules.modules().iter().map(|m| (m.id(), m.settings()))),
    )
}

/// The application state: `shared`, every capability's part, and each module installed
/// (`Module::install`: what modules provide each other).
pub fn assemble(shared: AppParts, capabilities: Capabilities) -> AppState {
    let auth = &shared.config.auth;
    let hashing = PasswordHashing::new(auth.max_concurrent_hashes, auth.max_queued_hashes);
    let public_limit =
        PublicLimit::new(auth.public_requests_per_minute, auth.public_requests_burst);
    let sealing = SecretSealing::new(&shared.data_dir.keys());
    let live = Arc::new(Hub::new(
        crate::core::jobs::TOPICS
            .iter()
            .chain(crate::core::settings::TOPICS)
            .chain(crate::core::sync::conflicts::TOPICS)
            .copied()
            .chain(
                capabilities
                    .registry
                    .modules()
                    .iter()
                    .flat_map(|m| m.topics().iter().copied()),
            ),
        shared.config.websocket.queue_capacity,
        shared.clock.clone(),
    ));
    // A key declared twice is a programming error that every test would meet at once.
    let settings = Arc::new(
        declared_settings(&capabilities.registry)
            .unwrap_or_else(|e| panic!("the settings declarations conflict: {e}")),
    );
    let handlers = job_handlers(&capabilities.registry);
    let scheduled: Vec<_> = capabilities
        .registry
        .modules()
        .iter()
        .flat_map(|m| m.schedules())
        .collect();
    let parts = shared
        .with(capabilities.signing_key)
        .with(settings)
        .with(hashing)
        .with(public_limit)
        .with(sealing)
        .with(live)
        .with(capabilities.registry)
        .with(capabilities.modules)
        .with(capabilities.backup_target)
        .with(handlers)
        .with(ScheduledJobs(
            [
                crate::core::backup::jobs::schedules(),
                schedule::maintenance_schedules(),
                scheduled,
            ]
            .concat(),
        ));
    let state = AppState::from_parts(parts);
    for module in state.registry().modules() {
        module.install(&state);
    }
    state
}
