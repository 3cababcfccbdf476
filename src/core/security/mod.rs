//! Security events: who tried what, from where, and what came of it.

pub mod events;
pub mod http;
