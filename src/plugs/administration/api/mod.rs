//! What the administration plug offers other plugs. Another plug may use `api::<module>` only
//! when one of its modules declares a dependency on `administration.<module>` (a test checks this).

pub mod closings;
pub mod places;
