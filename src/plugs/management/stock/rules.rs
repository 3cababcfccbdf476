//! The rules of a manual stock adjustment, apart from the SQL: a non-zero signed quantity with
//! at most three decimals and under 100 billion in size, a reason from the closed list
//! ([`StockReason`], checked where the JSON enters), and a note of at most 500 characters
//! (blank is none).

use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::core::http::problem::FieldError;
use crate::shared::money::Quantity;

/// Why stock changed by hand (`sale` is reserved for sales). A closed list: anything else is
/// refused where the JSON enters.
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
    pub note: Option<String>,
}

/// Checks an adjustment's quantity and note; every broken rule is one field error.
pub fn check(quantity_delta: &str, note: Option<&str>) -> Result<ValidAdjustment, Vec<FieldError>> {
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
    fn a_reason_outside_the_list_is_refused_naming_the_field() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)] // Read by serde only.
        struct Body {
            reason_code: StockReason,
        }
        let body: Body = serde_json::from_str(r#"{"reason_code": "internal_use"}"#).unwrap();
        assert_eq!(body.reason_code.as_str(), "internal_use");
        let refused = crate::core::http::json::parse::<Body>(br#"{"reason_code": "sale"}"#);
        let Err(crate::core::http::ApiError::Validation(errors)) = refused else {
            panic!("{refused:?}")
        };
        assert_eq!(errors[0].field, "reason_code");
    }

    #[test]
    fn a_received_delivery_with_a_note_passes() {
        let valid = check("24.5", Some("  pallet 3 ")).unwrap();
        assert_eq!(valid.delta.to_string(), "24.5");
        assert_eq!(valid.note.as_deref(), Some("pallet 3"));
        assert_eq!(check("-1", Some("   ")).unwrap().note, None);
    }

    #[test]
    fn every_broken_rule_names_its_field() {
        assert_eq!(fields(check("0", None).unwrap_err()), ["quantity_delta"]);
        assert_eq!(
            fields(check("1.0001", None).unwrap_err()),
            ["quantity_delta"]
        );
        assert_eq!(
            fields(check("100000000000", None).unwrap_err()),
            ["quantity_delta"]
        );
        let long = "x".repeat(501);
        assert_eq!(
            fields(check("abc", Some(&long)).unwrap_err()),
            ["quantity_delta", "note"]
        );
    }
}
