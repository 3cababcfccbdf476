//! A sale as the API shows it, and reading one back from the database (GET and replays give
//! exactly the body the creating request got).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::discounts::DiscountKind;
use crate::plugs::management::api::customers::{AppliedRule, CustomerDocument};
use crate::plugs::operations::api::cash::SessionSales;
use crate::plugs::operations::api::sales::{
    CorrectionRef, Corrections, SalesPeriod, SoldLine, SoldSale,
};
use crate::shared::money::{QUANTITY_SCALE, round_half_up, show};

/// A sale.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Sale {
    pub id: Uuid,
    pub receipt_number: String,
    /// `completed` (voids and returns are separate documents).
    pub status: String,
    pub register_id: Uuid,
    pub cash_session_id: Uuid,
    pub cashier_id: Uuid,
    pub currency: String,
    /// Whether the unit prices include tax (the business setting when the sale was made).
    pub prices_include_tax: bool,
    pub lines: Vec<SaleLine>,
    pub totals: Totals,
    /// Per tax rate, rates ascending.
    pub taxes: Vec<TaxLine>,
    pub payments: Vec<Payment>,
    /// Added to (or taken off) the cash due by cash rounding (`payment.cash_rounding`).
    #[schema(value_type = String, example = "0.00")]
    pub cash_rounding: String,
    #[schema(value_type = String, example = "3.01")]
    pub change_due: String,
    pub created_at: DateTime<Utc>,
    /// The discount on the whole sale, if any (its share per line is in each line's `discounts`).
    pub discount: Option<DiscountShown>,
    /// Everything the sale's discounts took off, line and sale discounts together.
    #[schema(value_type = String, example = "0.00")]
    pub discount_total: String,
    /// The approvals used (comma-separated), if any.
    pub approval_ref: Option<String>,
    /// The customer named, if any (`GET /api/v1/customers/{id}`).
    pub customer_id: Option<Uuid>,
    /// Its returns (`POST /api/v1/returns`), oldest first.
    pub returns: Vec<CorrectionRef>,
    /// The void that reversed it (`POST /api/v1/sales/{id}/void`), if any.
    pub voided_by: Option<Uuid>,
}

/// One line.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SaleLine {
    pub line_no: i32,
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    #[schema(value_type = String, example = "2.000")]
    pub quantity: String,
    #[schema(value_type = String, example = "2.50")]
    pub unit_price: String,
    /// The catalog price at the time (differs from `unit_price` when overridden).
    #[schema(value_type = String, example = "2.50")]
    pub catalog_price: String,
    #[schema(value_type = String, example = "0.00")]
    pub discount: String,
    /// round(quantity x unit_price) - discount.
    #[schema(value_type = String, example = "5.00")]
    pub total: String,
    #[schema(value_type = String, example = "0.19")]
    pub tax_rate: String,
    /// Its own discount and its share of the sale's, if any (together: `discount`).
    pub discounts: Option<LineDiscounts>,
    /// Why its price differs from the catalog's, when a reason was given.
    pub price_reason: Option<String>,
    /// The customer's price list rule that set `unit_price` (`catalog_price` is the list price
    /// it started from), if one did.
    pub price_rule: Option<AppliedRule>,
    /// What may still be returned of it (the quantity less its returns; zero once voided).
    #[schema(value_type = String, example = "2.000")]
    pub returnable: String,
}

/// A discount as given and what it took off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DiscountShown {
    pub kind: DiscountKind,
    /// A percent (`"10"`) or an amount (`"1.50"`).
    #[schema(example = "10")]
    pub value: String,
    pub reason_code: String,
    /// What it took off.
    #[schema(value_type = String, example = "1.00")]
    pub amount: String,
}

/// A line's discounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LineDiscounts {
    /// Its own discount.
    pub own: Option<DiscountShown>,
    /// Its share of the sale's discount.
    #[schema(value_type = String, example = "0.33")]
    pub sale_share: String,
}

/// Every discount of a sale and its price reasons, as stored with it (`sales.discount_detail`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscountRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale: Option<DiscountShown>,
    /// By line number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lines: BTreeMap<i32, LineDiscounts>,
    /// By line number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub price_reasons: BTreeMap<i32, String>,
}

impl DiscountRecord {
    /// Nothing to store.
    pub fn is_empty(&self) -> bool {
        self.sale.is_none() && self.lines.is_empty() && self.price_reasons.is_empty()
    }

    /// Shows it on `sale`.
    pub fn show_on(&self, sale: &mut Sale) {
        sale.discount = self.sale.clone();
        for line in &mut sale.lines {
            line.discounts = self.lines.get(&line.line_no).cloned();
            line.price_reason = self.price_reasons.get(&line.line_no).cloned();
        }
    }
}

impl Sale {
    /// Shows what corrected it: its returns, its void and each line's returnable quantity.
    pub fn corrected(mut self, corrections: Corrections) -> Sale {
        for line in &mut self.lines {
            if let Some(returned) = corrections.returned.get(&line.line_no)
                && let Ok(quantity) = line.quantity.parse::<Decimal>()
            {
                line.returnable = show_quantity((quantity - returned).max(Decimal::ZERO));
            }
        }
        self.returns = corrections.returns;
        self.voided_by = corrections.voided_by;
        self
    }
}

/// Sale totals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Totals {
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub total: String,
}

/// The taxes of one rate.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TaxLine {
    #[schema(value_type = String, example = "0.19")]
    pub rate: String,
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub gross: String,
}

/// One payment.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Payment {
    /// `cash`, `card`, `voucher` or `other`.
    pub method: String,
    #[schema(value_type = String, example = "10.00")]
    pub amount: String,
}

/// Quantities show three decimals.
pub fn show_quantity(q: Decimal) -> String {
    round_half_up(q, QUANTITY_SCALE).to_string()
}

/// Rates show no trailing zeros (`0.19`, `0.07`, `0`).
pub fn show_rate(rate: Decimal) -> String {
    rate.normalize().to_string()
}

#[derive(sqlx::FromRow)]
struct SaleRow {
    id: Uuid,
    receipt_number: String,
    status: String,
    register_id: Uuid,
    cash_session_id: Uuid,
    cashier_id: Uuid,
    currency: String,
    prices_include_tax: bool,
    net: Decimal,
    tax: Decimal,
    total: Decimal,
    cash_rounding: Decimal,
    change_due: Decimal,
    created_at: DateTime<Utc>,
    discount_total: Decimal,
    discount_detail: Option<sqlx::types::Json<DiscountRecord>>,
    approval_ref: Option<String>,
    customer_id: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct LineRow {
    line_no: i32,
    product_id: Uuid,
    sku: String,
    name: String,
    quantity: Decimal,
    unit_price: Decimal,
    catalog_price: Decimal,
    discount: Decimal,
    total: Decimal,
    tax_rate: Decimal,
    price_rule: Option<sqlx::types::Json<AppliedRule>>,
}

/// Sale `id`, or `None`.
pub async fn load(
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<Option<Sale>, sqlx::Error> {
    let Some(row): Option<SaleRow> = sqlx::query_as(
        "SELECT id, receipt_number, status, register_id, cash_session_id, cashier_id, currency::text AS currency, \
                prices_include_tax, net, tax, total, cash_rounding, change_due, created_at, discount_total, \
                discount_detail, approval_ref, customer_id \
         FROM sales WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT line_no, product_id, sku, name, quantity, unit_price, catalog_price, discount, total, tax_rate, price_rule \
         FROM sale_lines WHERE sale_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let taxes: Vec<(Decimal, Decimal, Decimal, Decimal)> = sqlx::query_as(
        "SELECT rate, net, tax, gross FROM sale_taxes WHERE sale_id = $1 ORDER BY rate",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let payments: Vec<(String, Decimal)> = sqlx::query_as(
        "SELECT method, amount FROM sale_payments WHERE sale_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let mut sale = Sale {
        id: row.id,
        receipt_number: row.receipt_number,
        status: row.status,
        register_id: row.register_id,
        cash_session_id: row.cash_session_id,
        cashier_id: row.cashier_id,
        currency: row.currency,
        prices_include_tax: row.prices_include_tax,
        lines: lines
            .into_iter()
            .map(|l| SaleLine {
                line_no: l.line_no,
                product_id: l.product_id,
                sku: l.sku,
                name: l.name,
                quantity: show_quantity(l.quantity),
                unit_price: show(l.unit_price, scale),
                catalog_price: show(l.catalog_price, scale),
                discount: show(l.discount, scale),
                total: show(l.total, scale),
                tax_rate: show_rate(l.tax_rate),
                discounts: None,
                price_reason: None,
                price_rule: l.price_rule.map(|r| r.0),
                returnable: show_quantity(l.quantity),
            })
            .collect(),
        totals: Totals {
            net: show(row.net, scale),
            tax: show(row.tax, scale),
            total: show(row.total, scale),
        },
        taxes: taxes
            .into_iter()
            .map(|(rate, net, tax, gross)| TaxLine {
                rate: show_rate(rate),
                net: show(net, scale),
                tax: show(tax, scale),
                gross: show(gross, scale),
            })
            .collect(),
        payments: payments
            .into_iter()
            .map(|(method, amount)| Payment {
                method,
                amount: show(amount, scale),
            })
            .collect(),
        cash_rounding: show(row.cash_rounding, scale),
        change_due: show(row.change_due, scale),
        created_at: row.created_at,
        discount: None,
        discount_total: show(row.discount_total, scale),
        approval_ref: row.approval_ref,
        customer_id: row.customer_id,
        returns: Vec::new(),
        voided_by: None,
    };
    if let Some(detail) = row.discount_detail {
        detail.0.show_on(&mut sale);
    }
    Ok(Some(sale))
}

/// The sales of cash session `id`, for the cash module's X report and close (sales provide it:
/// see [`crate::plugs::operations::api::cash::SessionSalesSource`]).
pub async fn session_sales(conn: &mut PgConnection, id: Uuid) -> Result<SessionSales, sqlx::Error> {
    let (count, net, tax, total, cash_rounding, change_given): (
        i64,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
        Decimal,
    ) = sqlx::query_as(
        "SELECT count(*), COALESCE(sum(net), 0), COALESCE(sum(tax), 0), COALESCE(sum(total), 0), \
                    COALESCE(sum(cash_rounding), 0), COALESCE(sum(change_due), 0) \
             FROM sales WHERE cash_session_id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let by_method: Vec<(String, i64, Decimal)> = sqlx::query_as(
        "SELECT p.method, count(*), sum(p.amount) FROM sales s JOIN sale_payments p ON p.sale_id = s.id \
         WHERE s.cash_session_id = $1 GROUP BY p.method ORDER BY p.method",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let by_rate: Vec<(Decimal, Decimal, Decimal, Decimal)> = sqlx::query_as(
        "SELECT t.rate, sum(t.net), sum(t.tax), sum(t.gross) FROM sales s JOIN sale_taxes t ON t.sale_id = s.id \
         WHERE s.cash_session_id = $1 GROUP BY t.rate ORDER BY t.rate",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let cash_payments = by_method
        .iter()
        .filter(|(method, _, _)| method == "cash")
        .map(|(_, _, amount)| *amount)
        .sum();
    Ok(SessionSales {
        count,
        net,
        tax,
        total,
        cash_rounding,
        cash_payments,
        change_given,
        by_method,
        by_rate,
    })
}

/// Was sale `id` recorded from this request (this cashier, this body)? `None`: no such sale.
pub async fn same_sale(
    conn: &mut PgConnection,
    id: Uuid,
    cashier: Uuid,
    request_hash: &[u8],
) -> Result<Option<bool>, sqlx::Error> {
    // Sales recorded before their request's digest was kept (migration 0016) compare the cashier.
    sqlx::query_scalar(
        "SELECT cashier_id = $2 AND (request_hash IS NULL OR request_hash = $3) FROM sales WHERE id = $1",
    )
    .bind(id)
    .bind(cashier)
    .bind(request_hash)
    .fetch_optional(conn)
    .await
}

/// Which sales a list shows.
#[derive(Debug, Default)]
pub struct SaleFilter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub register_id: Option<Uuid>,
    pub cashier_id: Option<Uuid>,
}

/// A sale in a list.
#[derive(Debug, sqlx::FromRow)]
pub struct SummaryRow {
    pub id: Uuid,
    pub receipt_number: String,
    pub status: String,
    pub register_id: Uuid,
    pub cashier_id: Uuid,
    pub cash_session_id: Uuid,
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
}

/// Up to `limit` sales of `filter`, newest first, after the (created_at, id) `after`.
pub async fn summaries(
    conn: &mut PgConnection,
    filter: &SaleFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<SummaryRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, receipt_number, status, register_id, cashier_id, cash_session_id, total, created_at FROM sales \
         WHERE ($1::timestamptz IS NULL OR created_at >= $1) AND ($2::timestamptz IS NULL OR created_at < $2) \
           AND ($3::uuid IS NULL OR register_id = $3) AND ($4::uuid IS NULL OR cashier_id = $4) \
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6)) \
         ORDER BY created_at DESC, id DESC LIMIT $7",
    )
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.register_id)
    .bind(filter.cashier_id)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Sale `id` as a correction reads it (`operations::api::sales::sold_sale`).
pub async fn sold_sale(conn: &mut PgConnection, id: Uuid) -> Result<Option<SoldSale>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        receipt_number: String,
        register_id: Uuid,
        cash_session_id: Uuid,
        cashier_id: Uuid,
        location_id: Option<Uuid>,
        currency: String,
        prices_include_tax: bool,
        net: Decimal,
        tax: Decimal,
        total: Decimal,
        cash_rounding: Decimal,
        change_due: Decimal,
        payment_methods: Vec<String>,
        payment_amounts: Vec<Decimal>,
        tax_rates: Vec<Decimal>,
        tax_nets: Vec<Decimal>,
        tax_amounts: Vec<Decimal>,
        tax_grosses: Vec<Decimal>,
        created_at: DateTime<Utc>,
        customer_id: Option<Uuid>,
    }
    let Some(r): Option<Row> = sqlx::query_as(
        "SELECT receipt_number, register_id, cash_session_id, cashier_id, location_id, currency::text AS currency, \
                prices_include_tax, net, tax, total, cash_rounding, change_due, payment_methods, payment_amounts, \
                tax_rates, tax_nets, tax_amounts, tax_grosses, created_at, customer_id \
         FROM sales WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let lines: Vec<SoldLine> = sqlx::query_as(
        "SELECT line_no, product_id, sku, name, quantity, unit_price, total, tax_rate, stock_after IS NOT NULL AS tracked \
         FROM sale_lines WHERE sale_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(SoldSale {
        id,
        receipt_number: r.receipt_number,
        register_id: r.register_id,
        cash_session_id: r.cash_session_id,
        cashier_id: r.cashier_id,
        location_id: r.location_id,
        currency: r.currency,
        prices_include_tax: r.prices_include_tax,
        net: r.net,
        tax: r.tax,
        total: r.total,
        cash_rounding: r.cash_rounding,
        change_due: r.change_due,
        payments: r
            .payment_methods
            .into_iter()
            .zip(r.payment_amounts)
            .collect(),
        taxes: r
            .tax_rates
            .into_iter()
            .zip(r.tax_nets)
            .zip(r.tax_amounts)
            .zip(r.tax_grosses)
            .map(|(((rate, net), tax), gross)| (rate, net, tax, gross))
            .collect(),
        lines,
        created_at: r.created_at,
        customer_id: r.customer_id,
    }))
}

/// See [`crate::plugs::operations::api::sales::period_totals`].
pub async fn period_totals(
    conn: &mut PgConnection,
    registers: &[Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<SalesPeriod, sqlx::Error> {
    const IN_PERIOD: &str = "register_id = ANY($1) AND created_at >= $2 AND created_at < $3";
    #[allow(clippy::type_complexity)] // One row of six sums.
    let (count, net, tax, total, discounts, change_given): (i64, Decimal, Decimal, Decimal, Decimal, Decimal) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), COALESCE(sum(net), 0), COALESCE(sum(tax), 0), COALESCE(sum(total), 0), \
                    COALESCE(sum(discount_total), 0), COALESCE(sum(change_due), 0) FROM sales WHERE {IN_PERIOD}"
        )))
        .bind(registers)
        .bind(start)
        .bind(end)
        .fetch_one(&mut *conn)
        .await?;
    let by_method = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT p.method, count(*), sum(p.amount) FROM sales s, unnest(s.payment_methods, s.payment_amounts) AS p(method, amount) \
         WHERE s.{IN_PERIOD} GROUP BY p.method ORDER BY p.method"
    )))
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let by_rate = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.rate, sum(t.net), sum(t.tax), sum(t.gross) \
         FROM sales s, unnest(s.tax_rates, s.tax_nets, s.tax_amounts, s.tax_grosses) AS t(rate, net, tax, gross) \
         WHERE s.{IN_PERIOD} GROUP BY t.rate ORDER BY t.rate"
    )))
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let numbers = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT f.register_id, f.count, f.first, l.last FROM \
           (SELECT DISTINCT ON (register_id) register_id, receipt_number AS first, count(*) OVER (PARTITION BY register_id) AS count \
              FROM sales WHERE {IN_PERIOD} ORDER BY register_id, created_at, receipt_seq) f \
         JOIN (SELECT DISTINCT ON (register_id) register_id, receipt_number AS last \
              FROM sales WHERE {IN_PERIOD} ORDER BY register_id, created_at DESC, receipt_seq DESC) l USING (register_id) \
         ORDER BY f.register_id"
    )))
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    Ok(SalesPeriod {
        count,
        net,
        tax,
        total,
        discounts,
        change_given,
        by_method,
        by_rate,
        numbers,
    })
}

/// See [`crate::plugs::operations::api::sales::first_at`].
pub async fn first_at(
    conn: &mut PgConnection,
    registers: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(created_at) FROM sales WHERE register_id = ANY($1) AND created_at >= $2 AND created_at < $3",
    )
    .bind(registers)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await
}

/// See [`crate::plugs::operations::api::sales::sales_of`].
pub async fn sales_of(
    conn: &mut PgConnection,
    cashier: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<crate::plugs::operations::api::sales::SaleSeen>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, total, discount_total, payment_methods = ARRAY['cash'] AND change_due = 0 AS exact_cash, created_at \
         FROM sales WHERE cashier_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at",
    )
    .bind(cashier)
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}

/// See [`crate::plugs::operations::api::sales::active_sellers`].
pub async fn active_sellers(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT cashier_id FROM sales WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}

/// The sales that name `customer` before position `before` (newest first), at most `limit`
/// (see [`crate::plugs::management::api::customers::SalesOfCustomers`]).
pub async fn customer_documents(
    conn: &mut PgConnection,
    customer: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<CustomerDocument>, sqlx::Error> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(Uuid, String, DateTime<Utc>, String, Decimal, sqlx::types::Json<serde_json::Value>)> =
        sqlx::query_as(
            "SELECT s.id, s.receipt_number, s.created_at, s.currency::text, s.total, \
               (SELECT coalesce(json_agg(json_build_object('line_no', l.line_no, 'product_id', l.product_id, 'sku', l.sku, \
                  'name', l.name, 'quantity', l.quantity::text, 'unit_price', l.unit_price::text, 'total', l.total::text) \
                  ORDER BY l.line_no), '[]'::json) FROM sale_lines l WHERE l.sale_id = s.id) \
             FROM sales s WHERE s.customer_id = $1 AND ($2::timestamptz IS NULL OR (s.created_at, s.id) < ($2, $3)) \
             ORDER BY s.created_at DESC, s.id DESC LIMIT $4",
        )
        .bind(customer)
        .bind(before.map(|b| b.0))
        .bind(before.map(|b| b.1))
        .bind(limit)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, number, at, currency, total, lines)| CustomerDocument {
                kind: "sale".to_owned(),
                id,
                number,
                at,
                currency,
                total,
                lines: lines.0,
            },
        )
        .collect())
}

/// Each customer's latest sale.
pub async fn customers_latest(
    conn: &mut PgConnection,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, max(created_at) FROM sales WHERE customer_id IS NOT NULL GROUP BY customer_id",
    )
    .fetch_all(conn)
    .await
}
