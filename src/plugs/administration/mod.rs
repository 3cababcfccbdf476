//! The administration plug: places (branches, locations, registers), the Z closings, and
//! suspicious-pattern flags with incident notes.

pub mod api;
pub mod closings;
pub mod incidents;
pub mod places;
