//! The administration plug: places (branches, locations, registers) and the Z closings.

pub mod api;
pub mod closings;
pub mod places;
