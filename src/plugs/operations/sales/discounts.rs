//! Discounts, with no I/O: what a line's and the sale's discounts take off, and how far a
//! cashier may go alone. The rules (also in docs/api.md):
//!
//! - A discount is a percent or an amount, with a reason code from a closed list.
//! - A line's own discount comes off its amount (round(quantity x unit price)): a percent is
//!   round(amount x percent / 100), half-up at the minor unit; an amount at most the line's amount.
//! - The sale's discount comes off what the lines are after their own discounts: a percent of
//!   their sum (rounded the same way), or an amount at most that sum. It is spread over the lines in
//!   proportion to those amounts, in minor units, the units left by rounding down going to the lines
//!   with the largest remainders (ties: the earlier line), so the shares add up exactly.
//! - Taxes are then computed on the discounted line totals, per tax bucket (the sale's pricing
//!   rules), so a sale discount lowers each bucket by its lines' shares.
//! - A cashier without `operations.sales.discount` may discount each line, everything included,
//!   by at most `sales.max_cashier_discount_percent` of its amount; beyond it the sale needs an
//!   approval for that action.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::shared::money::round_half_up;

/// Why a discount is given (a closed list).
pub const REASONS: &[&str] = &[
    "damaged",
    "loyalty",
    "staff",
    "promotion",
    "price_match",
    "other",
];

/// Percent or amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscountKind {
    Percent,
    Amount,
}

/// A discount as checked: its kind, value and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discount {
    pub kind: DiscountKind,
    /// A percent (0 < v <= 100) or an amount (> 0) at the currency's scale.
    pub value: Decimal,
    pub reason_code: String,
}

impl Discount {
    /// What it takes off `base` (not more than `base`; `None` when an amount exceeds it).
    pub fn off(&self, base: Decimal, scale: u32) -> Option<Decimal> {
        let off = match self.kind {
            DiscountKind::Percent => round_half_up(base * self.value / Decimal::ONE_HUNDRED, scale),
            DiscountKind::Amount => self.value,
        };
        (off <= base).then_some(off)
    }
}

/// `total` spread over `bases` in proportion, in units of `10^-scale`, adding up exactly
/// (`total <= sum(bases)`; all zero when the bases are).
pub fn allocate(total: Decimal, bases: &[Decimal], scale: u32) -> Vec<Decimal> {
    let sum: Decimal = bases.iter().sum();
    if sum.is_zero() || total.is_zero() {
        return vec![Decimal::ZERO; bases.len()];
    }
    let unit = Decimal::new(1, scale);
    let mut shares = Vec::with_capacity(bases.len());
    let mut remainders = Vec::with_capacity(bases.len());
    for (i, base) in bases.iter().enumerate() {
        let exact = total * base / sum;
        let down = (exact / unit).floor() * unit;
        shares.push(down);
        remainders.push((exact - down, i));
    }
    let mut left = total - shares.iter().sum::<Decimal>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left < unit {
            break;
        }
        shares[i] += unit;
        left -= unit;
    }
    shares
}

/// The largest share of its own amount that any line is discounted by, in percent
/// (`lines`: (amount, discount everything included)).
pub fn largest_percent(lines: &[(Decimal, Decimal)]) -> Decimal {
    lines
        .iter()
        .filter(|(amount, _)| !amount.is_zero())
        .map(|(amount, discount)| discount * Decimal::ONE_HUNDRED / amount)
        .max()
        .unwrap_or(Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn percent_and_amount_discounts_round_half_up_and_never_exceed_the_base() {
        let ten = Discount {
            kind: DiscountKind::Percent,
            value: d("10"),
            reason_code: "loyalty".into(),
        };
        assert_eq!(ten.off(d("9.95"), 2), Some(d("1.00")));
        assert_eq!(ten.off(d("0.05"), 2), Some(d("0.01")));
        let all = Discount {
            kind: DiscountKind::Percent,
            value: d("100"),
            reason_code: "staff".into(),
        };
        assert_eq!(all.off(d("3.33"), 2), Some(d("3.33")));
        let five = Discount {
            kind: DiscountKind::Amount,
            value: d("5.00"),
            reason_code: "other".into(),
        };
        assert_eq!(five.off(d("5.00"), 2), Some(d("5.00")));
        assert_eq!(five.off(d("4.99"), 2), None);
    }

    #[test]
    fn a_sale_discount_is_spread_in_proportion_and_adds_up_exactly() {
        let shares = allocate(d("1.00"), &[d("1.00"), d("1.00"), d("1.00")], 2);
        assert_eq!(shares, vec![d("0.34"), d("0.33"), d("0.33")]);
        assert_eq!(shares.iter().sum::<Decimal>(), d("1.00"));
        let shares = allocate(d("3.00"), &[d("10.00"), d("20.00"), d("0.00")], 2);
        assert_eq!(shares, vec![d("1.00"), d("2.00"), d("0.00")]);
        let shares = allocate(d("0.05"), &[d("0.99"), d("0.01")], 2);
        assert_eq!(shares.iter().sum::<Decimal>(), d("0.05"));
        assert_eq!(allocate(d("7"), &[d("3"), d("4")], 0), vec![d("3"), d("4")]);
        assert_eq!(allocate(d("0"), &[d("3")], 2), vec![d("0")]);
    }

    #[test]
    fn the_largest_line_percent_decides_the_cashier_limit() {
        assert_eq!(
            largest_percent(&[(d("10"), d("1")), (d("4"), d("1"))]),
            d("25")
        );
        assert_eq!(largest_percent(&[(d("0"), d("0"))]), d("0"));
    }
}
