//! The catalog's SQL, one file per resource: `tax_classes`, `categories`, `products` and
//! `product_barcodes` (its tables). Writes take the audited transaction, so none can commit
//! without its audit record.

pub mod categories;
pub mod products;
pub mod sync;
pub mod tax_classes;
