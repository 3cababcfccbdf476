//! Small common types used by core and the plugs.

pub mod ids;
