//! What a closing states: the figures computed from the documents of its period (counts and
//! first/last numbers per register, totals by document type, by payment method and by tax rate,
//! discounts, the cash sessions) and the perpetual grand totals, with its place in the chain.
//! Serialized as JSON in field order with no whitespace, this is the text that is hashed and
//! signed (docs/api.md, "Closings").

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::period::Period;
use crate::plugs::administration::api::places::BranchPlaces;
use crate::plugs::management::api::stock;
use crate::plugs::operations::api::{cash, receipts, returns, sales};
use crate::shared::money::show;

/// The format name that starts every signed report.
pub const FORMAT: &str = "plugpos-closing-v1";

/// A closing's signed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClosingReport {
    /// `plugpos-closing-v1`.
    pub format: String,
    pub id: Uuid,
    /// Its place in the chain of all closings (1, 2, ...).
    pub seq: i64,
    /// `day`, `month` or `year`.
    pub kind: String,
    pub branch_id: Uuid,
    pub branch: String,
    pub business: String,
    /// The day; the first day of the month or year.
    pub business_date: String,
    /// RFC 3339, microseconds, UTC.
    pub period_start: String,
    pub period_end: String,
    pub timezone: String,
    pub day_starts_at: String,
    pub currency: String,
    pub figures: Figures,
    pub grand_totals: GrandTotals,
    /// Hex SHA-256 of the previous closing (64 zeros for the first).
    pub previous_hash: String,
    /// The audit chain's head when the closing was made.
    pub audit_head: AuditHead,
    pub created_at: String,
    pub created_by: Uuid,
}

/// Everything computed from the period's documents (what `plugpos closing verify` recomputes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    /// Per register: document counts and first/last numbers.
    pub documents: Vec<RegisterDocuments>,
    pub totals: DocumentTotals,
    /// Per payment method: received (cash less change), refunded, net.
    pub payments: Vec<PaymentTotal>,
    /// Per tax rate, sales and corrections together.
    pub taxes: Vec<TaxTotal>,
    /// What the sales' discounts took off.
    pub discounts: String,
    pub cash: CashTotals,
    /// Receipt copies (reprints, marked `COPY n`) made at the branch's registers among the
    /// renders recorded after `receipt_renders_after` up to `receipt_renders_through`: for a day,
    /// since the day closing before it (so a reprint made after a closing counts in the next);
    /// for a month or year, those of its days. Absent from closings made before receipts existed
    /// (read as 0).
    #[serde(default)]
    pub receipt_copies: i64,
    /// The previous day closing's `receipt_renders_through` (a month's or year's: the last day
    /// closing's before it).
    #[serde(default)]
    pub receipt_renders_after: i64,
    /// The last render counted (`receipt_renders.seq`): for a day, the last recorded when it was
    /// made (its lock holds new ones back); for a month or year, its last day's.
    #[serde(default)]
    pub receipt_renders_through: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegisterDocuments {
    pub register_id: Uuid,
    pub register: String,
    pub sales: Series,
    /// Returns and voids (one series).
    pub corrections: Series,
}

/// How many documents of one series, and the first and last numbers (none when none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Series {
    pub count: i64,
    pub first: Option<String>,
    pub last: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DocumentTotals {
    pub sales: Amounts,
    /// Negative.
    pub returns: Amounts,
    /// Negative.
    pub voids: Amounts,
    /// All three together.
    pub net: Amounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Amounts {
    pub count: i64,
    pub net: String,
    pub tax: String,
    pub total: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentTotal {
    pub method: String,
    pub received: String,
    pub refunded: String,
    pub net: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaxTotal {
    pub rate: String,
    pub net: String,
    pub tax: String,
    pub gross: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CashTotals {
    /// Sessions closed in the period.
    pub sessions_closed: i64,
    pub expected: String,
    pub counted: String,
    /// counted - expected.
    pub variance: String,
    pub no_sales: i64,
}

/// Cumulative since the first closing, never reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GrandTotals {
    /// All sales' totals.
    pub sales: String,
    /// All returns' and voids' totals, as a positive amount.
    pub returns: String,
    /// sales - returns.
    pub net: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

/// An instant as reports show it.
pub fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The signed bytes: the format name, a newline, the report's JSON.
pub fn message(json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(FORMAT.len() + 1 + json.len());
    out.extend_from_slice(FORMAT.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(json.as_bytes());
    out
}

/// When the earliest document of the branch in `[from, to)` was recorded, if any: sales,
/// returns and voids, cash movements, stock movements.
pub async fn first_document_at(
    conn: &mut PgConnection,
    branch: &BranchPlaces,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let registers: Vec<Uuid> = branch.registers.iter().map(|r| r.0).collect();
    let found = [
        sales::first_at(conn, &registers, from, to).await?,
        returns::first_at(conn, &registers, from, to).await?,
        cash::first_movement_at(conn, &registers, from, to).await?,
        stock::first_movement_at(conn, &branch.locations, from, to).await?,
    ];
    Ok(found.into_iter().flatten().min())
}

/// The figures of `branch` in `period`, from the documents, at the currency's `scale`; receipt
/// copies among the renders in `renders` (after, through).
pub async fn figures(
    conn: &mut PgConnection,
    branch: &BranchPlaces,
    period: Period,
    renders: (i64, i64),
    scale: u32,
) -> Result<Figures, sqlx::Error> {
    let registers: Vec<Uuid> = branch.registers.iter().map(|r| r.0).collect();
    let sold = sales::period_totals(conn, &registers, period.start, period.end).await?;
    let corrected = returns::period_totals(conn, &registers, period.start, period.end).await?;
    let drawer = cash::period_sessions(conn, &registers, period.start, period.end).await?;
    let mut figures = combine(branch, &sold, &corrected, &drawer, scale);
    let (after, through) = renders;
    figures.receipt_copies = receipts::copies_between(conn, &registers, after, through).await?;
    figures.receipt_renders_after = after;
    figures.receipt_renders_through = through;
    Ok(figures)
}

/// The figures from the modules' period totals (pure).
pub fn combine(
    branch: &BranchPlaces,
    sold: &sales::SalesPeriod,
    corrected: &returns::CorrectionsPeriod,
    drawer: &cash::CashPeriod,
    scale: u32,
) -> Figures {
    let money = |d: Decimal| show(d, scale);
    let series = |numbers: &[sales::Numbers], register: Uuid| {
        numbers
            .iter()
            .find(|n| n.register_id == register)
            .map(|n| Series {
                count: n.count,
                first: Some(n.first.clone()),
                last: Some(n.last.clone()),
            })
            .unwrap_or_default()
    };
    let documents = branch
        .registers
        .iter()
        .map(|(id, code)| RegisterDocuments {
            register_id: *id,
            register: code.clone(),
            sales: series(&sold.numbers, *id),
            corrections: series(&corrected.numbers, *id),
        })
        .filter(|r| r.sales.count > 0 || r.corrections.count > 0)
        .collect();
    let amounts = |count: i64, net: Decimal, tax: Decimal, total: Decimal| Amounts {
        count,
        net: money(net),
        tax: money(tax),
        total: money(total),
    };
    let (r, v) = (&corrected.returns, &corrected.voids);
    let totals = DocumentTotals {
        sales: amounts(sold.count, sold.net, sold.tax, sold.total),
        returns: amounts(r.count, r.net, r.tax, r.total),
        voids: amounts(v.count, v.net, v.tax, v.total),
        net: amounts(
            sold.count + r.count + v.count,
            sold.net + r.net + v.net,
            sold.tax + r.tax + v.tax,
            sold.total + r.total + v.total,
        ),
    };
    let mut methods: BTreeMap<&str, (Decimal, Decimal)> = BTreeMap::new();
    for (method, _, amount) in &sold.by_method {
        methods.entry(method).or_default().0 += amount;
    }
    if let Some(cash) = methods.get_mut("cash") {
        cash.0 -= sold.change_given;
    }
    for (method, _, amount) in &corrected.refunds_by_method {
        methods.entry(method).or_default().1 += amount;
    }
    let payments = methods
        .into_iter()
        .map(|(method, (received, refunded))| PaymentTotal {
            method: method.to_owned(),
            received: money(received),
            refunded: money(refunded),
            net: money(received - refunded),
        })
        .collect();
    let mut rates: BTreeMap<Decimal, (Decimal, Decimal, Decimal)> = BTreeMap::new();
    for (rate, net, tax, gross) in sold.by_rate.iter().chain(&corrected.by_rate) {
        let entry = rates.entry(rate.normalize()).or_default();
        entry.0 += net;
        entry.1 += tax;
        entry.2 += gross;
    }
    let taxes = rates
        .into_iter()
        .map(|(rate, (net, tax, gross))| TaxTotal {
            rate: rate.to_string(),
            net: money(net),
            tax: money(tax),
            gross: money(gross),
        })
        .collect();
    Figures {
        documents,
        totals,
        payments,
        taxes,
        discounts: money(sold.discounts),
        cash: cash_totals(drawer, scale),
        receipt_copies: 0,
        receipt_renders_after: 0,
        receipt_renders_through: 0,
    }
}

impl Figures {
    /// The receipt renders its copies were counted among: (after, through).
    pub fn renders(&self) -> (i64, i64) {
        (self.receipt_renders_after, self.receipt_renders_through)
    }
}

/// The cash sessions' figures.
fn cash_totals(drawer: &cash::CashPeriod, scale: u32) -> CashTotals {
    CashTotals {
        sessions_closed: drawer.sessions_closed,
        expected: show(drawer.expected, scale),
        counted: show(drawer.counted, scale),
        variance: show(drawer.variance, scale),
        no_sales: drawer.no_sales,
    }
}

/// The grand totals after `previous` (the last day closing's, or none) and a day's `figures`.
pub fn carried(previous: Option<&GrandTotals>, figures: &Figures, scale: u32) -> GrandTotals {
    let parse = |s: &str| s.parse::<Decimal>().unwrap_or_default();
    let (sales, returns) = previous.map_or((Decimal::ZERO, Decimal::ZERO), |g| {
        (parse(&g.sales), parse(&g.returns))
    });
    let t = &figures.totals;
    let sales = sales + parse(&t.sales.total);
    let returns = returns - parse(&t.returns.total) - parse(&t.voids.total);
    GrandTotals {
        sales: show(sales, scale),
        returns: show(returns, scale),
        net: show(sales - returns, scale),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn figures_combine_sales_and_corrections_by_method_and_rate() {
        let register = Uuid::nil();
        let branch = BranchPlaces {
            id: Uuid::nil(),
            name: "Main".into(),
            registers: vec![(register, "R1".into())],
            locations: vec![],
        };
        let sold = sales::SalesPeriod {
            count: 2,
            net: d("8.40"),
            tax: d("1.60"),
            total: d("10.00"),
            discounts: d("0.50"),
            change_given: d("0.40"),
            by_method: vec![("card".into(), 1, d("4.00")), ("cash".into(), 1, d("6.40"))],
            by_rate: vec![(d("0.190000"), d("8.40"), d("1.60"), d("10.00"))],
            numbers: vec![sales::Numbers {
                register_id: register,
                count: 2,
                first: "R1-1".into(),
                last: "R1-2".into(),
            }],
        };
        let corrected = returns::CorrectionsPeriod {
            returns: returns::KindTotals {
                count: 1,
                net: d("-2.10"),
                tax: d("-0.40"),
                total: d("-2.50"),
            },
            refunds_by_method: vec![("cash".into(), 1, d("2.50"))],
            by_rate: vec![(d("0.19"), d("-2.10"), d("-0.40"), d("-2.50"))],
            ..Default::default()
        };
        let f = combine(&branch, &sold, &corrected, &cash::CashPeriod::default(), 2);
        assert_eq!(f.totals.net.total, "7.50");
        assert_eq!(f.totals.net.count, 3);
        assert_eq!(f.payments[1].method, "cash");
        assert_eq!(
            (f.payments[1].received.as_str(), f.payments[1].net.as_str()),
            ("6.00", "3.50")
        );
        assert_eq!(
            f.taxes.len(),
            1,
            "one bucket per rate however it is written"
        );
        assert_eq!(f.taxes[0].gross, "7.50");
        assert_eq!(f.documents[0].corrections, Series::default());
        let grand = carried(
            Some(&GrandTotals {
                sales: "100.00".into(),
                returns: "5.00".into(),
                net: "95.00".into(),
            }),
            &f,
            2,
        );
        assert_eq!(
            (
                grand.sales.as_str(),
                grand.returns.as_str(),
                grand.net.as_str()
            ),
            ("110.00", "7.50", "102.50")
        );
    }
}
