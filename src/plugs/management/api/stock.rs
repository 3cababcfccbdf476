//! `management.stock` for other plugs: taking sold goods off a location's stock (the part of a
//! caller's audited statement that does it, and the columns that feed it).

pub use crate::plugs::management::stock::put_back::{ComingBack, LevelAfter, put_back};
pub use crate::plugs::management::stock::take::{TAKE_CTES, TakeColumns};
