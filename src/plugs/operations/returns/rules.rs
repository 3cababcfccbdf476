//! What may be given back and for how much, with no I/O.
//!
//! - A sale line gives back at most what was sold less what earlier returns gave back (the
//!   database holds the running total per line, `returned_quantities`, and refuses more).
//! - The refund of a line is its share of the line's total (after discounts), computed so that
//!   the parts of a line returned bit by bit add up to exactly its total:
//!   `round(total x (before + q) / sold) - round(total x before / sold)`, half-up at the minor unit.
//! - Taxes are computed per rate over the refunded amounts, with the sale's own prices-include-tax
//!   setting and rounding (the sale's pricing rules); all amounts of the document are negative.
//! - The refunds (by method) must add up to exactly the return's total.
//! - A void mirrors the sale entirely: every line, its tax buckets as recorded, and its payments
//!   (cash less the change given).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::plugs::operations::api::sales::{TaxBucket, tax_buckets};
use crate::shared::money::round_half_up;

/// Why goods come back (a closed list).
pub const RETURN_REASONS: &[&str] = &[
    "defective",
    "damaged",
    "wrong_item",
    "changed_mind",
    "price_dispute",
    "other",
];

/// Why a sale is voided (a closed list).
pub const VOID_REASONS: &[&str] = &[
    "cashier_error",
    "customer_cancelled",
    "payment_failed",
    "test_sale",
    "other",
];

/// What returning `quantity` of a line refunds, when `before` of its `sold` quantity came back
/// already (all positive; `before + quantity <= sold`).
pub fn line_refund(
    line_total: Decimal,
    sold: Decimal,
    before: Decimal,
    quantity: Decimal,
    scale: u32,
) -> Decimal {
    if sold.is_zero() {
        return Decimal::ZERO;
    }
    let upto = |q: Decimal| round_half_up(line_total * q / sold, scale);
    upto(before + quantity) - upto(before)
}

/// The (positive) tax buckets of refunded line amounts `(rate, amount)`.
pub fn refund_buckets(
    lines: &[(Decimal, Decimal)],
    prices_include_tax: bool,
    scale: u32,
) -> Vec<TaxBucket> {
    let mut by_rate: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for (rate, amount) in lines {
        *by_rate.entry(rate.normalize()).or_default() += amount;
    }
    tax_buckets(by_rate, prices_include_tax, scale)
}

/// The tax of a return against a sale, per rate: its share of the sale's own tax for that rate,
/// computed like a line's refund so that the parts returned one by one add up to exactly the
/// sale's tax (never a cent more, whatever the rounding): round(T x (before + x) / base) -
/// round(T x before / base), where `base` is the sale's bucket amount the prices are in (gross
/// with tax-inclusive prices, net otherwise), `before` what earlier returns gave back of it, `x`
/// this return's refunds at that rate. Answers the (positive) bucket.
pub fn share_of_bucket(
    bucket: &TaxBucket,
    prices_include_tax: bool,
    before: Decimal,
    amount: Decimal,
    scale: u32,
) -> TaxBucket {
    let base = if prices_include_tax {
        bucket.gross
    } else {
        bucket.net
    };
    let tax = line_refund(bucket.tax, base, before, amount, scale);
    if prices_include_tax {
        TaxBucket {
            rate: bucket.rate,
            net: amount - tax,
            tax,
            gross: amount,
        }
    } else {
        TaxBucket {
            rate: bucket.rate,
            net: amount,
            tax,
            gross: amount + tax,
        }
    }
}

/// The refunds of a void: what each payment method took, cash less the change given
/// (methods in the sale's order, one entry each, zero amounts left out).
pub fn void_refunds(payments: &[(String, Decimal)], change_due: Decimal) -> Vec<(String, Decimal)> {
    let mut out: Vec<(String, Decimal)> = Vec::new();
    for (method, amount) in payments {
        match out.iter_mut().find(|(m, _)| m == method) {
            Some((_, sum)) => *sum += amount,
            None => out.push((method.clone(), *amount)),
        }
    }
    if let Some((_, cash)) = out.iter_mut().find(|(m, _)| m == "cash") {
        *cash -= change_due;
    }
    out.retain(|(_, a)| *a > Decimal::ZERO);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn a_line_returned_in_parts_refunds_exactly_its_total() {
        // 3 x 3.33 = 9.99 with a 0.99 discount: 9.00, given back one at a time.
        let total = d("9.00");
        let parts: Vec<Decimal> = (0..3)
            .map(|i| line_refund(total, d("3"), Decimal::from(i), d("1"), 2))
            .collect();
        assert_eq!(parts, vec![d("3.00"), d("3.00"), d("3.00")]);
        let odd = d("10.00");
        let parts: Vec<Decimal> = (0..3)
            .map(|i| line_refund(odd, d("3"), Decimal::from(i), d("1"), 2))
            .collect();
        assert_eq!(parts, vec![d("3.33"), d("3.34"), d("3.33")]);
        assert_eq!(parts.iter().sum::<Decimal>(), odd);
        assert_eq!(line_refund(odd, d("3"), d("0"), d("3"), 2), odd);
    }

    #[test]
    fn refund_taxes_round_per_rate_like_the_sale() {
        let buckets = refund_buckets(
            &[
                (d("0.19"), d("2.50")),
                (d("0.19"), d("2.50")),
                (d("0.07"), d("1.99")),
            ],
            true,
            2,
        );
        assert_eq!(buckets.len(), 2);
        assert_eq!(
            (buckets[0].rate, buckets[0].tax, buckets[0].net),
            (d("0.07"), d("0.13"), d("1.86"))
        );
        assert_eq!(
            (buckets[1].rate, buckets[1].tax, buckets[1].net),
            (d("0.19"), d("0.80"), d("4.20"))
        );
    }

    #[test]
    fn net_priced_parts_never_refund_more_tax_than_the_sale_charged() {
        // 3 x 0.05 net at 10 %: the sale charged 0.02 tax (0.15 x 0.1 = 0.015 -> 0.02), total 0.17.
        let bucket = TaxBucket {
            rate: d("0.1"),
            net: d("0.15"),
            tax: d("0.02"),
            gross: d("0.17"),
        };
        let parts: Vec<TaxBucket> = (0..3)
            .map(|i| share_of_bucket(&bucket, false, d("0.05") * Decimal::from(i), d("0.05"), 2))
            .collect();
        let refunded: Decimal = parts.iter().map(|p| p.gross).sum();
        assert_eq!(refunded, d("0.17"), "{parts:?}");
        // Tax-inclusive: the buckets' gross is the refund, the tax its share.
        let inclusive = TaxBucket {
            rate: d("0.19"),
            net: d("8.40"),
            tax: d("1.60"),
            gross: d("10.00"),
        };
        let all = share_of_bucket(&inclusive, true, d("0"), d("10.00"), 2);
        assert_eq!((all.tax, all.net), (d("1.60"), d("8.40")));
    }

    #[test]
    fn a_void_gives_back_cash_less_change_and_the_rest_as_paid() {
        let refunds = void_refunds(
            &[
                ("card".into(), d("5.00")),
                ("cash".into(), d("10.00")),
                ("cash".into(), d("5.00")),
            ],
            d("3.01"),
        );
        assert_eq!(
            refunds,
            vec![("card".into(), d("5.00")), ("cash".into(), d("11.99"))]
        );
        assert_eq!(
            void_refunds(&[("cash".into(), d("5.00"))], d("5.00")),
            vec![]
        );
    }
}
