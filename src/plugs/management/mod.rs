//! The management plug: catalog (tax classes, categories, products), stock, purchasing
//! (suppliers, purchase orders, goods receipts) and customers (price lists, personal data);
//! reports come later. Other plugs use it through [`api`].

pub mod api;
pub mod catalog;
pub mod customers;
pub mod purchasing;
pub mod stock;
