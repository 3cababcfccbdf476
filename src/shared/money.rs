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

#[cfg(test)]
mod tests {
    use super::*;

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
