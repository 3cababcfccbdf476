//! The cash rules, apart from the SQL. The drawer should hold the opening float, plus cash
//! payments less the change given, plus cash put in, less cash taken out. A close records the
//! counted cash and the variance (counted - expected); a variance larger than the setting
//! `cash.variance_reason_threshold` needs a reason. A movement is `in` or `out` (the request's
//! type says so), of more than zero, with a reason of 1 to 500 characters. Amounts have the
//! currency's decimals.

use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::core::http::problem::FieldError;
use crate::shared::money::{Money, show};

/// Where the drawer's cash comes from.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct CashFlows {
    pub opening_float: Decimal,
    /// Cash payments received (before change).
    pub cash_payments: Decimal,
    pub change_given: Decimal,
    pub cash_in: Decimal,
    pub cash_out: Decimal,
    /// Cash handed back by returns and voids.
    pub cash_refunds: Decimal,
}

impl CashFlows {
    /// Opening float + cash payments - change + cash in - cash out - cash refunds.
    pub fn expected(&self) -> Decimal {
        self.opening_float + self.cash_payments - self.change_given + self.cash_in
            - self.cash_out
            - self.cash_refunds
    }
}

/// A money amount of field `field` with the currency's `scale`; a bad one is a field error.
pub fn amount(
    field: &str,
    text: &str,
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> Option<Decimal> {
    FieldError::gather(errors, field, Money::parse_in(text, scale)).map(Money::value)
}

/// Which way cash moves (a closed list, documented as such; parsed with the movement's other
/// fields by [`movement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Put into the drawer.
    In,
    /// Taken out of it.
    Out,
}

impl MovementKind {
    /// The kind named `text`, if it is one.
    pub fn parse(text: &str) -> Option<MovementKind> {
        match text {
            "in" => Some(MovementKind::In),
            "out" => Some(MovementKind::Out),
            _ => None,
        }
    }

    /// As stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            MovementKind::In => "in",
            MovementKind::Out => "out",
        }
    }
}

/// Where a session is in its life (a closed list, given as a query filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Open,
    Closed,
}

impl SessionStatus {
    /// `open` or `closed`, as stored; anything else is not a status.
    pub fn parse(text: &str) -> Option<SessionStatus> {
        match text {
            "open" => Some(SessionStatus::Open),
            "closed" => Some(SessionStatus::Closed),
            _ => None,
        }
    }

    /// As stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Open => "open",
            SessionStatus::Closed => "closed",
        }
    }
}

/// A movement that passed the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidMovement {
    pub kind: MovementKind,
    pub amount: Decimal,
    pub reason: String,
}

/// Checks a cash movement.
pub fn movement(
    kind: &str,
    amount_text: &str,
    reason: &str,
    scale: u32,
) -> Result<ValidMovement, Vec<FieldError>> {
    let mut errors = Vec::new();
    let kind = MovementKind::parse(kind);
    if kind.is_none() {
        errors.push(FieldError::new("kind", "must be in or out"));
    }
    let value = amount("amount", amount_text, scale, &mut errors);
    if value.is_some_and(|v| v.is_zero()) {
        errors.push(FieldError::new("amount", "must be more than zero"));
    }
    let trimmed = reason.trim().to_owned();
    if trimmed.is_empty() || reason.chars().count() > 500 {
        errors.push(FieldError::new("reason", "must be 1 to 500 characters"));
    }
    match (kind, value, errors.is_empty()) {
        (Some(kind), Some(amount), true) => Ok(ValidMovement {
            kind,
            amount,
            reason: trimmed,
        }),
        _ => Err(errors),
    }
}

/// The variance reason a close needs: blank is none, at most 500 characters, and required when
/// `|counted - expected|` is above `threshold`. The error is the message for `variance_reason`.
pub fn variance_reason(
    reason: Option<&str>,
    expected: Decimal,
    counted: Decimal,
    threshold: Decimal,
    scale: u32,
) -> Result<Option<String>, String> {
    let reason = reason
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err("must be at most 500 characters".to_owned());
    }
    let variance = counted - expected;
    if variance.abs() > threshold && reason.is_none() {
        return Err(format!(
            "is required: the counted cash differs from the expected {} by {} (more than {})",
            show(expected, scale),
            show(variance, scale),
            show(threshold, scale),
        ));
    }
    Ok(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn amounts_are_bounded() {
        let mut errors = Vec::new();
        assert!(amount("a", "10000000001", 2, &mut errors).is_none());
        assert!(amount("a", "1.234", 2, &mut errors).is_none());
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn the_drawer_expects_float_plus_cash_taken_less_change_and_moves() {
        let flows = CashFlows {
            opening_float: d("150"),
            cash_payments: d("60"),
            change_given: d("4.50"),
            cash_in: d("20"),
            cash_out: d("100"),
            cash_refunds: d("5"),
        };
        assert_eq!(flows.expected(), d("120.50"));
    }

    #[test]
    fn a_large_variance_needs_a_reason_a_small_one_does_not() {
        let (expected, threshold) = (d("100"), d("5"));
        assert_eq!(
            variance_reason(None, expected, d("96"), threshold, 2),
            Ok(None)
        );
        let refused = variance_reason(Some("  "), expected, d("90"), threshold, 2).unwrap_err();
        assert!(
            refused.contains("expected 100.00 by -10.00 (more than 5.00)"),
            "{refused}"
        );
        assert_eq!(
            variance_reason(Some(" till miscount "), expected, d("90"), threshold, 2),
            Ok(Some("till miscount".to_owned()))
        );
        assert!(variance_reason(Some(&"x".repeat(501)), expected, expected, threshold, 2).is_err());
    }

    #[test]
    fn a_movement_is_in_or_out_of_more_than_zero_with_a_reason() {
        assert_eq!(
            movement("in", "20.00", " float top-up ", 2).unwrap().reason,
            "float top-up"
        );
        let fields: Vec<String> = movement("sideways", "0", "", 2)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["kind", "amount", "reason"]);
    }
}
