//! Purchasing's HTTP handlers: suppliers, and purchase orders with their receipts.

pub mod orders;
pub mod suppliers;
