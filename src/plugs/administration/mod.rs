//! The administration plug: places (branches, locations, registers); users, roles, settings,
//! modules and closings follow.

pub mod api;
pub mod places;
