//! The arithmetic of a sale, with no I/O: line totals, tax buckets, totals, cash rounding and
//! change. The rules (also in docs/api.md):
//!
//! - line total = round(quantity x unit price) - discount, never below zero;
//! - taxes are computed per rate over the sum of that rate's line totals (not per line), rounded
//!   half-up to the currency's minor unit: with tax-inclusive prices tax = round(gross x rate /
//!   (1 + rate)) and net = gross - tax; with net prices tax = round(net x rate), gross = net + tax;
//! - non-cash payments may not exceed the total; cash covers the rest, rounded half-up to the
//!   cash rounding step (`payment.cash_rounding`, e.g. 0.05), and may exceed it: the excess is change.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::shared::money::round_half_up;

/// One line as sold.
#[derive(Debug, Clone, Copy)]
pub struct LineInput {
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub discount: Decimal,
    pub tax_rate: Decimal,
}

/// One payment.
#[derive(Debug, Clone, Copy)]
pub struct PaymentInput {
    pub cash: bool,
    pub amount: Decimal,
}

/// The taxes of one rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaxBucket {
    pub rate: Decimal,
    pub net: Decimal,
    pub tax: Decimal,
    pub gross: Decimal,
}

/// Everything the server computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    pub line_totals: Vec<Decimal>,
    pub taxes: Vec<TaxBucket>,
    pub net: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    /// What cash rounding added to (or took off) the amount paid.
    pub cash_rounding: Decimal,
    pub change_due: Decimal,
}

/// Why a sale cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// The discount of line `index` (0-based) is larger than the line.
    DiscountTooLarge { index: usize },
    /// Card, voucher and other payments add up to more than the total.
    NonCashExceedsTotal { total: Decimal, non_cash: Decimal },
    /// The payments do not cover what is due.
    Insufficient { due: Decimal, paid: Decimal },
}

/// Prices a sale at the currency's `scale`.
pub fn price(
    lines: &[LineInput],
    payments: &[PaymentInput],
    prices_include_tax: bool,
    scale: u32,
    cash_step: Decimal,
) -> Result<Priced, PricingError> {
    let mut line_totals = Vec::with_capacity(lines.len());
    let mut by_rate: BTreeMap<Decimal, Decimal> = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        let amount = round_half_up(line.quantity * line.unit_price, scale);
        if line.discount > amount {
            return Err(PricingError::DiscountTooLarge { index });
        }
        let total = round_half_up(amount - line.discount, scale);
        *by_rate.entry(line.tax_rate.normalize()).or_default() += total;
        line_totals.push(total);
    }
    let taxes = tax_buckets(by_rate, prices_include_tax, scale);
    let zero = round_half_up(Decimal::ZERO, scale);
    let net = taxes.iter().fold(zero, |a, t| a + t.net);
    let tax = taxes.iter().fold(zero, |a, t| a + t.tax);
    let total = taxes.iter().fold(zero, |a, t| a + t.gross);

    let non_cash: Decimal = payments.iter().filter(|p| !p.cash).map(|p| p.amount).sum();
    let cash: Decimal = payments.iter().filter(|p| p.cash).map(|p| p.amount).sum();
    if non_cash > total {
        return Err(PricingError::NonCashExceedsTotal { total, non_cash });
    }
    let remaining = total - non_cash;
    let (cash_due, cash_rounding) = if cash.is_zero() || remaining.is_zero() {
        (remaining, Decimal::ZERO)
    } else {
        let due = round_to_step(remaining, cash_step, scale);
        (due, due - remaining)
    };
    if cash < cash_due {
        return Err(PricingError::Insufficient {
            due: non_cash + cash_due,
            paid: non_cash + cash,
        });
    }
    Ok(Priced {
        line_totals,
        taxes,
        net,
        tax,
        total,
        cash_rounding: round_half_up(cash_rounding, scale),
        change_due: round_half_up(cash - cash_due, scale),
    })
}

/// The tax buckets of amounts summed per rate (`by_rate`: rate -> sum of line totals), rates
/// ascending: the tax of each rate is computed once over its sum and rounded half-up to the
/// currency's minor unit. Returns and voids use it too, so their buckets round like the sale's.
pub fn tax_buckets(
    by_rate: BTreeMap<Decimal, Decimal>,
    prices_include_tax: bool,
    scale: u32,
) -> Vec<TaxBucket> {
    by_rate
        .into_iter()
        .map(|(rate, sum)| {
            if prices_include_tax {
                let tax = round_half_up(sum * rate / (Decimal::ONE + rate), scale);
                TaxBucket {
                    rate,
                    net: sum - tax,
                    tax,
                    gross: sum,
                }
            } else {
                let tax = round_half_up(sum * rate, scale);
                TaxBucket {
                    rate,
                    net: sum,
                    tax,
                    gross: sum + tax,
                }
            }
        })
        .collect()
}

/// `amount` rounded half-up to a multiple of `step`.
fn round_to_step(amount: Decimal, step: Decimal, scale: u32) -> Decimal {
    if step <= Decimal::ZERO {
        return round_half_up(amount, scale);
    }
    let steps = (amount / step)
        .round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    round_half_up(steps * step, scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn line(q: &str, p: &str, disc: &str, rate: &str) -> LineInput {
        LineInput {
            quantity: d(q),
            unit_price: d(p),
            discount: d(disc),
            tax_rate: d(rate),
        }
    }

    fn cash(a: &str) -> PaymentInput {
        PaymentInput {
            cash: true,
            amount: d(a),
        }
    }

    fn card(a: &str) -> PaymentInput {
        PaymentInput {
            cash: false,
            amount: d(a),
        }
    }

    #[test]
    fn tax_inclusive_buckets_round_half_up_per_rate() {
        // 2 x 2.50 at 19 % and 1 x 1.99 at 7 %, paid with a 10 note.
        let p = price(
            &[
                line("2", "2.50", "0", "0.19"),
                line("1", "1.99", "0", "0.07"),
            ],
            &[cash("10.00")],
            true,
            2,
            d("0.01"),
        )
        .unwrap();
        assert_eq!(p.line_totals, vec![d("5.00"), d("1.99")]);
        // 5.00 * 0.19 / 1.19 = 0.7983 -> 0.80; 1.99 * 0.07 / 1.07 = 0.1301 -> 0.13
        assert_eq!(p.taxes[0].rate, d("0.07"));
        assert_eq!((p.taxes[0].tax, p.taxes[0].net), (d("0.13"), d("1.86")));
        assert_eq!((p.taxes[1].tax, p.taxes[1].net), (d("0.80"), d("4.20")));
        assert_eq!((p.net, p.tax, p.total), (d("6.06"), d("0.93"), d("6.99")));
        assert_eq!(p.change_due.to_string(), "3.01");
    }

    #[test]
    fn half_cent_rounds_up_and_net_prices_add_tax() {
        // 0.25 net at 10 % = 0.025 tax -> 0.03 (half-up, not banker's 0.02).
        let p = price(
            &[line("1", "0.25", "0", "0.10")],
            &[card("0.28")],
            false,
            2,
            d("0.01"),
        )
        .unwrap();
        assert_eq!((p.net, p.tax, p.total), (d("0.25"), d("0.03"), d("0.28")));
        assert_eq!(p.change_due.to_string(), "0.00");
    }

    #[test]
    fn discounts_and_fractional_quantities() {
        // 0.333 kg at 3.00 = 0.999 -> 1.00, minus 0.10 discount = 0.90.
        let p = price(
            &[line("0.333", "3.00", "0.10", "0")],
            &[cash("1")],
            true,
            2,
            d("0.01"),
        )
        .unwrap();
        assert_eq!(p.line_totals, vec![d("0.90")]);
        assert_eq!(p.taxes[0].tax, d("0.00"));
        assert_eq!(
            price(
                &[line("1", "1.00", "1.01", "0")],
                &[cash("1")],
                true,
                2,
                d("0.01")
            ),
            Err(PricingError::DiscountTooLarge { index: 0 })
        );
    }

    #[test]
    fn cash_rounding_to_five_cents() {
        // Total 10.03: cash due rounds to 10.05, a 20 note gets 9.95 back.
        let p = price(
            &[line("1", "10.03", "0", "0.081")],
            &[cash("20.00")],
            true,
            2,
            d("0.05"),
        )
        .unwrap();
        assert_eq!(p.total, d("10.03"));
        assert_eq!((p.cash_rounding, p.change_due), (d("0.02"), d("9.95")));
        // 10.02 rounds down to 10.00: exact cash is enough.
        let p = price(
            &[line("1", "10.02", "0", "0")],
            &[cash("10.00")],
            true,
            2,
            d("0.05"),
        )
        .unwrap();
        assert_eq!((p.cash_rounding, p.change_due), (d("-0.02"), d("0.00")));
        // Paid by card entirely: no rounding.
        let p = price(
            &[line("1", "10.03", "0", "0")],
            &[card("10.03")],
            true,
            2,
            d("0.05"),
        )
        .unwrap();
        assert_eq!(p.cash_rounding, d("0.00"));
    }

    #[test]
    fn payments_must_cover_and_only_cash_may_exceed() {
        let lines = [line("1", "10.00", "0", "0.19")];
        assert_eq!(
            price(&lines, &[card("10.01")], true, 2, d("0.01")),
            Err(PricingError::NonCashExceedsTotal {
                total: d("10.00"),
                non_cash: d("10.01")
            })
        );
        assert_eq!(
            price(&lines, &[card("4.00"), cash("5.99")], true, 2, d("0.01")),
            Err(PricingError::Insufficient {
                due: d("10.00"),
                paid: d("9.99")
            })
        );
        let split = price(&lines, &[card("4.00"), cash("10")], true, 2, d("0.01")).unwrap();
        assert_eq!(split.change_due, d("4.00"));
    }

    #[test]
    fn zero_decimal_currencies() {
        let p = price(
            &[line("3", "333", "0", "0.10")],
            &[cash("1000")],
            true,
            0,
            d("1"),
        )
        .unwrap();
        // 999 * 0.1 / 1.1 = 90.8 -> 91
        assert_eq!((p.tax, p.total, p.change_due), (d("91"), d("999"), d("1")));
    }
}
