//! The rules of a manual stock adjustment, apart from the SQL: a non-zero signed quantity with
//! at most three decimals and under 100 billion in size, a reason from the closed list
//! ([`StockReason`], checked where the JSON enters), and a note of at most 500 characters
//! (blank is none).

use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::core::http::problem::FieldError;
use crate::shared::money::Quantity;

/// Why stock changed by hand (`sale` is reserved for sales). A closed list, documented as such;
/// parsed with the adjustment's other fields by [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StockReason {
    Received,
    Count,
    Damaged,
    Expired,
    Theft,
    InternalUse,
    ReturnedToSupplier,
    Correction,
}

impl StockReason {
    /// Every reason, in the order the refusal lists them.
    pub const ALL: [StockReason; 8] = [
        StockReason::Received,
        StockReason::Count,
        StockReason::Damaged,
        StockReason::Expired,
        StockReason::Theft,
        StockReason::InternalUse,
        StockReason::ReturnedToSupplier,
        StockReason::Correction,
    ];

    /// The reason named `text`, if it is one.
    pub fn parse(text: &str) -> Option<StockReason> {
        StockReason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// As stored (`stock_movements.reason_code`) and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            StockReason::Received => "received",
            StockReason::Count => "count",
            StockReason::Damaged => "damaged",
            StockReason::Expired => "expired",
            StockReason::Theft => "theft",
            StockReason::InternalUse => "internal_use",
            StockReason::ReturnedToSupplier => "returned_to_supplier",
            StockReason::Correction => "correction",
        }
    }
}

/// An adjustment that passed the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidAdjustment {
    pub delta: Decimal,
    pub reason: StockReason,
    pub note: Option<String>,
}

/// Checks an adjustment's quantity, reason and note; every broken rule is one field error.
pub fn check(
    quantity_delta: &str,
    reason_code: &str,
    note: Option<&str>,
) -> Result<ValidAdjustment, Vec<FieldError>> {
    let mut errors = Vec::new();
    let delta = FieldError::gather(
        &mut errors,
        "quantity_delta",
        Quantity::parse_signed(quantity_delta),
    )
    .map(Quantity::value);
    if delta.is_some_and(|d| d.is_zero()) {
        errors.push(FieldError::new("quantity_delta", "must not be zero"));
    }
    if delta.is_some_and(|d| d.abs() >= Decimal::from(100_000_000_000i64)) {
        errors.push(FieldError::new("quantity_delta", "is too large"));
    }
    let reason = StockReason::parse(reason_code);
    if reason.is_none() {
        let all: Vec<&str> = StockReason::ALL.iter().map(|r| r.as_str()).collect();
        errors.push(FieldError::new(
            "reason_code",
            format!("must be one of {}", all.join(", ")),
        ));
    }
    let note = note
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        errors.push(FieldError::new("note", "must be at most 500 characters"));
    }
    match (delta, reason, errors.is_empty()) {
        (Some(delta), Some(reason), true) => Ok(ValidAdjustment {
            delta,
            reason,
            note,
        }),
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
    fn a_reason_outside_the_list_is_refused_with_the_list() {
        let errors = check("1", "sale", None).unwrap_err();
        assert_eq!(errors[0].field, "reason_code");
        assert_eq!(
            errors[0].message,
            "must be one of received, count, damaged, expired, theft, internal_use, returned_to_supplier, correction"
        );
        assert_eq!(
            StockReason::parse("internal_use"),
            Some(StockReason::InternalUse)
        );
    }

    #[test]
    fn a_received_delivery_with_a_note_passes() {
        let valid = check("24.5", "received", Some("  pallet 3 ")).unwrap();
        assert_eq!(valid.reason, StockReason::Received);
        assert_eq!(valid.delta.to_string(), "24.5");
        assert_eq!(valid.note.as_deref(), Some("pallet 3"));
        assert_eq!(check("-1", "damaged", Some("   ")).unwrap().note, None);
    }

    #[test]
    fn every_broken_rule_names_its_field() {
        assert_eq!(
            fields(check("0", "count", None).unwrap_err()),
            ["quantity_delta"]
        );
        assert_eq!(
            fields(check("1.0001", "count", None).unwrap_err()),
            ["quantity_delta"]
        );
        assert_eq!(
            fields(check("100000000000", "count", None).unwrap_err()),
            ["quantity_delta"]
        );
        let long = "x".repeat(501);
        assert_eq!(
            fields(check("abc", "sale", Some(&long)).unwrap_err()),
            ["quantity_delta", "reason_code", "note"]
        );
    }
}
