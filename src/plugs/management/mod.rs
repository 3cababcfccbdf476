//! The management plug: catalog (tax classes, categories, products), stock, purchasing
//! (suppliers, purchase orders, goods receipts) and customers (price lists, personal data)
//! and reports (the registry every module's reports join, and the dashboard). Other plugs use it through [`api`].

pub mod api;
pub mod catalog;
pub mod customers;
pub mod purchasing;
pub mod reports;
pub mod stock;
