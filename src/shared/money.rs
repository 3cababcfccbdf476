//! Decimal amounts from JSON strings: never floats, never more decimals than allowed.

use rust_decimal::Decimal;

/// Parses a non-negative decimal string in plain notation with at most `scale` decimals.
/// The error says what is wrong, for a field error.
pub fn parse_amount(text: &str, scale: u32) -> Result<Decimal, String> {
    let text = text.trim();
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.');
    let value: Decimal = text
        .parse()
        .ok()
        .filter(|_| plain)
        .ok_or_else(|| "must be a non-negative decimal string such as \"12.50\"".to_owned())?;
    if value.normalize().scale() > scale {
        return Err(format!("must have at most {scale} decimals"));
    }
    Ok(value)
}

/// Amounts a till handles stay below this; larger ones are typos.
pub const MAX_AMOUNT: i64 = 10_000_000_000;

/// [`parse_amount`] for money a cashier types: also refuses amounts of [`MAX_AMOUNT`] or more.
pub fn parse_money(text: &str, scale: u32) -> Result<Decimal, String> {
    let value = parse_amount(text, scale)?;
    if value >= Decimal::from(MAX_AMOUNT) {
        return Err("is too large".to_owned());
    }
    Ok(value)
}

/// Quantities have three decimals.
pub const QUANTITY_SCALE: u32 = 3;

/// Parses a decimal string that may carry a leading `-` (a stock change, say), with at most
/// `scale` decimals.
pub fn parse_signed(text: &str, scale: u32) -> Result<Decimal, String> {
    let text = text.trim();
    match text.strip_prefix('-') {
        Some(rest) => parse_amount(rest, scale).map(|v| -v).map_err(|_| {
            format!("must be a decimal string such as \"-2.5\" with at most {scale} decimals")
        }),
        None => parse_amount(text, scale),
    }
}

/// An amount of the business's currency as a cashier types it: not negative, at most the
/// currency's decimals (its scale), below [`MAX_AMOUNT`]. Parsed once where the JSON string enters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Money(Decimal);

impl Money {
    /// Parses `text` with the currency's `scale`; the error says what is wrong, for a field error.
    pub fn parse_in(text: &str, scale: u32) -> Result<Money, String> {
        parse_money(text, scale).map(Money)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

/// A quantity of goods: at most three decimals ([`QUANTITY_SCALE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(Decimal);

impl Quantity {
    /// A quantity sold or counted: not negative.
    pub fn parse(text: &str) -> Result<Quantity, String> {
        parse_amount(text, QUANTITY_SCALE).map(Quantity)
    }

    /// A change of stock: may carry a leading `-`.
    pub fn parse_signed(text: &str) -> Result<Quantity, String> {
        parse_signed(text, QUANTITY_SCALE).map(Quantity)
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

/// Rounds half away from zero (half-up for the positive amounts of a sale) to `scale` decimals.
pub fn round_half_up(value: Decimal, scale: u32) -> Decimal {
    let mut rounded =
        value.round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(scale);
    rounded
}

/// `value` with exactly `scale` decimals, as the API shows money (`"12.50"`).
pub fn show(value: Decimal, scale: u32) -> String {
    round_half_up(value, scale).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_and_rounding() {
        assert_eq!(parse_signed("-2.5", 3).unwrap().to_string(), "-2.5");
        assert_eq!(parse_signed("4", 3).unwrap().to_string(), "4");
        assert!(parse_signed("--1", 3).is_err());
        assert!(parse_signed("-1.2345", 3).is_err());
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(round_half_up(d("0.125"), 2).to_string(), "0.13");
        assert_eq!(round_half_up(d("0.124"), 2).to_string(), "0.12");
        assert_eq!(round_half_up(d("-0.125"), 2).to_string(), "-0.13");
        assert_eq!(round_half_up(d("3"), 2).to_string(), "3.00");
        assert_eq!(show(d("1.5"), 0), "2");
    }

    #[test]
    fn money_and_quantities_keep_their_scales() {
        assert_eq!(
            Money::parse_in("12.50", 2).unwrap().value().to_string(),
            "12.50"
        );
        assert_eq!(
            Money::parse_in("12.505", 2).unwrap_err(),
            "must have at most 2 decimals"
        );
        assert_eq!(
            Money::parse_in("10000000000", 2).unwrap_err(),
            "is too large"
        );
        assert!(Money::parse_in("-1", 2).is_err());
        assert_eq!(Quantity::parse("1.25").unwrap().value().to_string(), "1.25");
        assert!(Quantity::parse("0.0001").is_err());
        assert!(Quantity::parse("-1").is_err());
        assert_eq!(
            Quantity::parse_signed("-2.5").unwrap().value().to_string(),
            "-2.5"
        );
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("12.50", 2).unwrap().to_string(), "12.50");
        assert_eq!(parse_amount("3", 2).unwrap().to_string(), "3");
        assert_eq!(
            parse_amount("1.230", 2).unwrap().to_string(),
            "1.230",
            "trailing zeros are not extra precision"
        );
        for bad in ["1.234", "-1", "1e2", "", "12,50", "abc"] {
            assert!(parse_amount(bad, 2).is_err(), "{bad}");
        }
    }
}
