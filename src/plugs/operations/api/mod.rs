//! What the operations plug offers other plugs, and its modules each other. A module may use
//! `api::<module>` only when it declares a dependency on `operations.<module>` (a test checks this).

pub mod approvals;
pub mod cash;
pub mod receipts;
pub mod returns;
pub mod sales;
