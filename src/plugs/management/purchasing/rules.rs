//! The rules of purchasing, apart from the SQL.
//!
//! - A purchase order moves `draft` -> `ordered` -> `partially_received` -> `received`, or is
//!   `cancelled` while nothing was received (from `draft` or `ordered`).
//! - A goods receipt names lines of an ordered (or partly received) order with positive
//!   quantities; more than was ordered (less what already arrived) is refused unless the setting
//!   `purchasing.allow_over_receipt` is on. Its unit cost is the order line's unless given.
//! - The cost price after a receipt, by the setting `purchasing.cost_method`:
//!   `moving_average` (default): (on hand x cost before + received x unit cost) / (on hand +
//!   received), where on hand is the product's stock over all locations before the receipt; with
//!   nothing (or less than nothing) on hand, or no cost before, the unit cost. `last`: the unit
//!   cost. Rounded half up to four decimals (the column's scale).

use rust_decimal::Decimal;

use crate::shared::money::round_half_up;

/// The two ways a receipt sets the cost price.
pub const COST_METHODS: [&str; 2] = ["moving_average", "last"];

/// The order's state after an action, or why the action may not be done.
pub fn next_status(status: &str, action: &str) -> Result<&'static str, String> {
    match (action, status) {
        ("order", "draft") => Ok("ordered"),
        ("cancel", "draft" | "ordered") => Ok("cancelled"),
        ("receive", "ordered" | "partially_received") => Ok("partially_received"),
        ("order", _) => Err(format!(
            "only a draft can be ordered; this order is {status}"
        )),
        ("cancel", _) => Err(format!(
            "only a draft or an ordered order with nothing received can be cancelled; this one is {status}"
        )),
        ("receive", _) => Err(format!(
            "goods are received against an ordered order; this one is {status}"
        )),
        _ => Err(format!("unknown action {action}")),
    }
}

/// The cost price after receiving `received` at `unit_cost`, with `on_hand` in stock at `before`.
pub fn cost_after(
    method: &str,
    before: Option<Decimal>,
    on_hand: Decimal,
    received: Decimal,
    unit_cost: Decimal,
) -> Decimal {
    let cost = match (method, before) {
        ("last", _) | (_, None) => unit_cost,
        (_, Some(_)) if on_hand <= Decimal::ZERO => unit_cost,
        (_, Some(before)) => (on_hand * before + received * unit_cost) / (on_hand + received),
    };
    round_half_up(cost, 4)
}

/// Is receiving `quantity` on a line ordered `ordered` with `already` received allowed?
pub fn over_receipt(
    ordered: Decimal,
    already: Decimal,
    quantity: Decimal,
    allowed: bool,
) -> Option<String> {
    let open = ordered - already;
    (!allowed && quantity > open).then(|| {
        format!(
            "{} would exceed what is still expected ({} of {} ordered); \
             the setting purchasing.allow_over_receipt allows it",
            quantity.normalize(),
            open.normalize(),
            ordered.normalize()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn the_moving_average_weighs_stock_on_hand_against_what_arrived() {
        // 10 on hand at 1.00, 30 arrive at 2.00: (10 + 60) / 40 = 1.75.
        assert_eq!(
            cost_after("moving_average", Some(d("1")), d("10"), d("30"), d("2")),
            d("1.7500")
        );
        // Nothing on hand (or oversold), or no cost yet: the unit cost.
        assert_eq!(
            cost_after("moving_average", Some(d("1")), d("-2"), d("5"), d("2")),
            d("2.0000")
        );
        assert_eq!(
            cost_after("moving_average", None, d("10"), d("5"), d("2")),
            d("2.0000")
        );
        assert_eq!(
            cost_after("last", Some(d("1")), d("10"), d("5"), d("2.5")),
            d("2.5000")
        );
        // 3 at 1.00 and 1 at 2.00: 1.25; 1 at 1 and 2 at 1.10: 1.0666.. -> 1.0667.
        assert_eq!(
            cost_after("moving_average", Some(d("1")), d("1"), d("2"), d("1.1")),
            d("1.0667")
        );
    }

    #[test]
    fn orders_move_forward_and_over_receipt_needs_the_setting() {
        assert_eq!(next_status("draft", "order"), Ok("ordered"));
        assert_eq!(next_status("ordered", "receive"), Ok("partially_received"));
        assert!(next_status("received", "receive").is_err());
        assert!(next_status("partially_received", "cancel").is_err());
        assert!(next_status("draft", "receive").is_err());
        assert!(
            over_receipt(d("10"), d("4"), d("7"), false)
                .unwrap()
                .contains("6 of 10")
        );
        assert_eq!(over_receipt(d("10"), d("4"), d("6"), false), None);
        assert_eq!(over_receipt(d("10"), d("4"), d("7"), true), None);
    }
}
