//! Settings. Business settings live in the `settings` table, each declared in the typed registry
//! ([`registry`]) by the module that reads it, changed through `PATCH /api/v1/settings` (validated
//! as a whole, one audited transaction, an optimistic version, pushed on the `settings` topic) and
//! read by the domain through [`Business`] (cached until they change). The server's own settings
//! stay in the config file; the API shows them read-only with their source ([`file`]).

mod business;
pub mod file;
pub mod http;
pub mod registry;
pub mod store;

pub use business::{Business, DEFAULT_RECEIPT_FORMAT};
pub use registry::{DefaultValue, Registry, Setting, SettingType};

use crate::core::live::Topic;
use crate::core::state::AppState;

/// The WebSocket topic of settings changes (`settings.changed` with the new version and the keys).
pub const TOPICS: &[Topic] = &[Topic {
    name: "settings",
    permission: registry::READ,
    description: "settings.changed: {version, keys}",
}];

impl AppState {
    /// The declared settings (core's and the registered modules').
    pub fn settings(&self) -> &Registry {
        self.part::<std::sync::Arc<Registry>>()
    }
}
