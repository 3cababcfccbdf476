//! The rules of a manual stock adjustment, apart from the SQL: a non-zero signed quantity with
//! at most three decimals and under 100 billion in size, a reason from the closed list, and a
//! note of at most 500 characters (blank is none).

use rust_decimal::Decimal;

use crate::core::http::problem::FieldError;
use crate::shared::money::{QUANTITY_SCALE, parse_signed};

/// Why stock changed by hand (`sale` is reserved for sales).
pub const REASON_CODES: &[&str] = &[
    "received",
    "count",
    "damaged",
    "expired",
    "theft",
    "internal_use",
    "returned_to_supplier",
    "correction",
];

/// An adjustment that passed the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidAdjustment {
    pub delta: Decimal,
    pub note: Option<String>,
}

/// Checks an adjustment's quantity, reason and note; every broken rule is one field error.
pub fn check(
    quantity_delta: &str,
    reason_code: &str,
    note: Option<&str>,
) -> Result<ValidAdjustment, Vec<FieldError>> {
    let mut errors = Vec::new();
    let delta = parse_signed(quantity_delta, QUANTITY_SCALE)
        .map_err(|why| errors.push(FieldError::new("quantity_delta", why)))
        .ok();
    if delta.is_some_and(|d| d.is_zero()) {
        errors.push(FieldError::new("quantity_delta", "must not be zero"));
    }
    if delta.is_some_and(|d| d.abs() >= Decimal::from(100_000_000_000i64)) {
        errors.push(FieldError::new("quantity_delta", "is too large"));
    }
    if !REASON_CODES.contains(&reason_code) {
        errors.push(FieldError::new(
            "reason_code",
            format!("must be one of {}", REASON_CODES.join(", ")),
        ));
    }
    let note = note
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        errors.push(FieldError::new("note", "must be at most 500 characters"));
    }
    match (delta, errors.is_empty()) {
        (Some(delta), true) => Ok(ValidAdjustment { delta, note }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_received_delivery_with_a_note_passes() {
        let valid = check("24.5", "received", Some("  pallet 3 ")).unwrap();
        assert_eq!(valid.delta.to_string(), "24.5");
        assert_eq!(valid.note.as_deref(), Some("pallet 3"));
        assert_eq!(check("-1", "damaged", Some("   ")).unwrap().note, None);
    }

    #[test]
    fn every_broken_rule_names_its_field() {
        assert_eq!(
            fields(check("0", "received", None).unwrap_err()),
            ["quantity_delta"]
        );
        assert_eq!(
            fields(check("1.0001", "received", None).unwrap_err()),
            ["quantity_delta"]
        );
        assert_eq!(
            fields(check("100000000000", "count", None).unwrap_err()),
            ["quantity_delta"]
        );
        assert_eq!(
            fields(check("1", "sale", None).unwrap_err()),
            ["reason_code"]
        );
        let long = "x".repeat(501);
        assert_eq!(
            fields(check("abc", "nope", Some(&long)).unwrap_err()),
            ["quantity_delta", "reason_code", "note"]
        );
    }
}
