//! The catalog's handlers, one file per resource (the SQL is in `../store`).

pub mod categories;
pub mod products;
pub mod tax_classes;
