//! The suspicious-pattern rules, with no I/O. Per cashier and business day:
//!
//! - `corrections_count`: more returns and voids than `flags.max_corrections_per_day`;
//! - `corrections_share`: returns and voids worth more than
//!   `flags.max_corrections_percent` of the cashier's sales that day;
//! - `discount`: a sale discounted by more than `flags.discount_percent_above` of its amount
//!   before discounts (one flag per sale);
//! - `outside_hours`: sales or no-sale drawer opens outside `flags.opening_hours`
//!   (`HH:MM-HH:MM` in the business timezone, may pass midnight; `off` by default);
//! - `void_after_exact_cash`: a void, within `flags.void_after_exact_cash_minutes` (0: off), of
//!   the cashier's own sale paid in cash exactly (no change): the classic way to pocket it (one
//!   flag per void).

use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::plugs::operations::api::returns::CorrectionSeen;
use crate::plugs::operations::api::sales::SaleSeen;

/// The thresholds (settings).
#[derive(Debug, Clone)]
pub struct Thresholds {
    pub max_corrections: i64,
    pub max_corrections_percent: Decimal,
    pub discount_percent: Decimal,
    /// Opening and closing time; `None`: no opening hours set.
    pub hours: Option<(NaiveTime, NaiveTime)>,
    pub void_minutes: i64,
}

/// A cashier's business day as the rules see it.
#[derive(Debug, Clone, Default)]
pub struct Day {
    pub sales: Vec<SaleSeen>,
    pub corrections: Vec<CorrectionSeen>,
    /// (movement, when).
    pub no_sales: Vec<(Uuid, DateTime<Utc>)>,
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub rule: &'static str,
    /// Tells hits of one rule apart on one day (the document; empty for per-day rules).
    pub key: String,
    pub details: Value,
    pub documents: Vec<Uuid>,
}

/// `HH:MM-HH:MM`, or `off`.
pub fn parse_hours(text: &str) -> Result<Option<(NaiveTime, NaiveTime)>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    let parse = |t: &str| {
        NaiveTime::parse_from_str(t.trim(), "%H:%M")
            .ok()
            .filter(|_| t.trim().len() == 5)
    };
    match text.split_once('-').map(|(a, b)| (parse(a), parse(b))) {
        Some((Some(open), Some(close))) if open != close => Ok(Some((open, close))),
        _ => Err(
            "must be HH:MM-HH:MM (opening and closing time, e.g. 08:00-20:00), or empty".to_owned(),
        ),
    }
}

/// Is `at` within `(open, close)` in `tz`? A window may pass midnight (22:00-02:00).
fn within(at: DateTime<Utc>, (open, close): (NaiveTime, NaiveTime), tz: Tz) -> bool {
    let t = at.with_timezone(&tz).time();
    if open < close {
        open <= t && t < close
    } else {
        t >= open || t < close
    }
}

/// Every rule that fires on `day`.
pub fn hits(day: &Day, limits: &Thresholds, tz: Tz) -> Vec<Hit> {
    let mut out = Vec::new();
    let corrections = day.corrections.len() as i64;
    let ids = |c: &[CorrectionSeen]| c.iter().map(|c| c.id).collect::<Vec<_>>();
    if corrections > limits.max_corrections {
        out.push(Hit {
            rule: "corrections_count",
            key: String::new(),
            details: json!({"count": corrections, "threshold": limits.max_corrections}),
            documents: ids(&day.corrections),
        });
    }
    let sold: Decimal = day.sales.iter().map(|s| s.total).sum();
    let given_back: Decimal = -day.corrections.iter().map(|c| c.total).sum::<Decimal>();
    if corrections >= 1 && sold > Decimal::ZERO {
        let percent = (given_back * Decimal::ONE_HUNDRED / sold).round_dp(2);
        if percent > limits.max_corrections_percent {
            out.push(Hit {
                rule: "corrections_share",
                key: String::new(),
                details: json!({"percent": percent.to_string(), "threshold": limits.max_corrections_percent.to_string(),
                                "sales": sold.to_string(), "corrections": given_back.to_string()}),
                documents: ids(&day.corrections),
            });
        }
    }
    for sale in &day.sales {
        let before = sale.total + sale.discount_total;
        if sale.discount_total.is_zero() || before.is_zero() {
            continue;
        }
        let percent = (sale.discount_total * Decimal::ONE_HUNDRED / before).round_dp(2);
        if percent > limits.discount_percent {
            out.push(Hit {
                rule: "discount",
                key: sale.id.to_string(),
                details: json!({"percent": percent.to_string(), "threshold": limits.discount_percent.to_string(),
                                "discount": sale.discount_total.to_string()}),
                documents: vec![sale.id],
            });
        }
    }
    if let Some(hours) = limits.hours {
        let outside: Vec<Uuid> = day
            .sales
            .iter()
            .map(|s| (s.id, s.created_at))
            .chain(day.no_sales.iter().copied())
            .filter(|(_, at)| !within(*at, hours, tz))
            .map(|(id, _)| id)
            .collect();
        if !outside.is_empty() {
            out.push(Hit {
                rule: "outside_hours",
                key: String::new(),
                details: json!({"documents": outside.len(),
                                "opening_hours": format!("{}-{}", hours.0.format("%H:%M"), hours.1.format("%H:%M"))}),
                documents: outside,
            });
        }
    }
    if limits.void_minutes > 0 {
        for void in day.corrections.iter().filter(|c| c.kind == "void") {
            let Some(sale) = day
                .sales
                .iter()
                .find(|s| Some(s.id) == void.original_sale_id)
            else {
                continue;
            };
            let after = void.created_at - sale.created_at;
            if sale.exact_cash && after <= chrono::Duration::minutes(limits.void_minutes) {
                out.push(Hit {
                    rule: "void_after_exact_cash",
                    key: void.id.to_string(),
                    details: json!({"seconds_after_sale": after.num_seconds(), "total": sale.total.to_string()}),
                    documents: vec![sale.id, void.id],
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn sale(total: &str, discount: &str, exact: bool, when: &str) -> SaleSeen {
        SaleSeen {
            id: Uuid::now_v7(),
            total: d(total),
            discount_total: d(discount),
            exact_cash: exact,
            created_at: at(when),
        }
    }

    fn limits() -> Thresholds {
        Thresholds {
            max_corrections: 2,
            max_corrections_percent: d("20"),
            discount_percent: d("30"),
            hours: parse_hours("08:00-20:00").unwrap(),
            void_minutes: 10,
        }
    }

    #[test]
    fn a_quiet_day_raises_nothing() {
        let day = Day {
            sales: vec![sale("10.00", "1.00", false, "2026-12-06T10:00:00Z")],
            ..Day::default()
        };
        assert!(hits(&day, &limits(), chrono_tz::UTC).is_empty());
    }

    #[test]
    fn each_rule_fires_on_its_pattern() {
        let exact = sale("5.00", "0", true, "2026-12-06T10:00:00Z");
        let late = sale("100.00", "60.00", false, "2026-12-06T21:30:00Z");
        let void = CorrectionSeen {
            id: Uuid::now_v7(),
            kind: "void".into(),
            total: d("-5.00"),
            original_sale_id: Some(exact.id),
            created_at: at("2026-12-06T10:03:00Z"),
        };
        let returns: Vec<CorrectionSeen> = (0..2)
            .map(|_| CorrectionSeen {
                id: Uuid::now_v7(),
                kind: "return".into(),
                total: d("-20.00"),
                original_sale_id: None,
                created_at: at("2026-12-06T11:00:00Z"),
            })
            .collect();
        let day = Day {
            sales: vec![exact, late],
            corrections: [vec![void], returns].concat(),
            no_sales: vec![(Uuid::now_v7(), at("2026-12-06T06:00:00Z"))],
        };
        let fired: Vec<&str> = hits(&day, &limits(), chrono_tz::UTC)
            .iter()
            .map(|h| h.rule)
            .collect();
        assert_eq!(
            fired,
            [
                "corrections_count",
                "corrections_share",
                "discount",
                "outside_hours",
                "void_after_exact_cash"
            ]
        );
    }

    #[test]
    fn opening_hours_may_pass_midnight_and_are_checked() {
        let bar = parse_hours("18:00-02:00").unwrap().unwrap();
        assert!(within(at("2026-12-06T23:30:00Z"), bar, chrono_tz::UTC));
        assert!(within(at("2026-12-06T01:30:00Z"), bar, chrono_tz::UTC));
        assert!(!within(at("2026-12-06T12:00:00Z"), bar, chrono_tz::UTC));
        assert_eq!(parse_hours("off"), Ok(None));
        assert!(parse_hours("").is_err());
        assert!(parse_hours("8-20").is_err());
        assert!(parse_hours("08:00-08:00").is_err());
    }
}
