//! The customers' handlers: customers, price lists, and their personal data (export, erasure,
//! the retention proposals).

pub mod customers;
pub mod price_lists;
pub mod privacy;

use crate::core::http::ApiError;

/// The fields of a customer that are personal data: sealed in audit records, emptied on erasure.
pub const PERSONAL: &[&str] = &["name", "email", "phone", "tax_id", "address", "notes"];

pub(crate) fn no_such_customer() -> ApiError {
    ApiError::NotFound {
        code: "customer.not_found",
        detail: "There is no such customer.".to_owned(),
    }
}
