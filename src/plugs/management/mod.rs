//! The management plug: catalog (tax classes, categories; products next), stock, suppliers,
//! customers, reports.

pub mod catalog;
