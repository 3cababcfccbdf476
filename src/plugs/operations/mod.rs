//! The operations plug: cash sessions, sales, approvals, returns and voids. It uses the
//! management plug only through `management::api`.

pub mod api;
pub mod approvals;
pub mod cash;
pub mod receipts;
pub mod returns;
pub mod sales;
