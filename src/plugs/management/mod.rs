//! The management plug: catalog (tax classes, categories, products) and stock; suppliers,
//! customers and reports come later. Other plugs use it through [`api`].

pub mod api;
pub mod catalog;
pub mod stock;
