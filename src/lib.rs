//! 3PlugPOS server: an offline-first, on-premise point-of-sale backend.
//!
//! Dependencies point inward: `plugs` -> `core` -> `shared`. See `docs/ARCHITECTURE.md`.

pub mod core;
pub mod plugs;
pub mod shared;

pub use crate::core::server::app::app;
pub use crate::core::state::AppState;
