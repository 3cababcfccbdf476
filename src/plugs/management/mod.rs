//! The management plug: catalog (tax classes, categories, products), stock, and purchasing
//! (suppliers, purchase orders, goods receipts); customers and reports come later. Other plugs
//! use it through [`api`].

pub mod api;
pub mod catalog;
pub mod purchasing;
pub mod stock;
