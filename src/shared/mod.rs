//! Small common types used by core and the plugs.

pub mod clock;
pub mod cron;
pub mod csv_cell;
pub mod fonts;
pub mod ids;
pub mod money;
pub mod pdf;
pub mod secret;
pub mod text;
