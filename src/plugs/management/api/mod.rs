//! What the management plug offers other plugs. Another plug may use `api::<module>` only when
//! one of its modules declares a dependency on `management.<module>` (a test checks this).

pub mod catalog;
pub mod customers;
pub mod stock;
