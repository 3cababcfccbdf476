//! The returns module's SQL: `returns`, `return_lines`, `return_counters` and
//! `returned_quantities` (its tables). Writes take the audited transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::AuditedTx;
use crate::core::db::violated_constraint;
use crate::plugs::management::api::customers::CustomerDocument;
use crate::plugs::operations::api::cash::SessionRefunds;
use crate::plugs::operations::api::returns::{CorrectionsPeriod, KindTotals};
use crate::plugs::operations::api::sales::{CorrectionRef, Corrections};
use crate::shared::money::{QUANTITY_SCALE, round_half_up, show};

/// A return or a void, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReturnDoc {
    pub id: Uuid,
    /// `return` or `void`.
    pub kind: String,
    /// In the register's correction series (see docs/api.md, "Returns and voids").
    pub number: String,
    /// The sale given back (none: a return without a receipt).
    pub original_sale_id: Option<Uuid>,
    pub register_id: Uuid,
    pub cash_session_id: Uuid,
    pub cashier_id: Uuid,
    pub currency: String,
    pub prices_include_tax: bool,
    pub lines: Vec<ReturnLine>,
    pub totals: DocTotals,
    /// Per tax rate, rates ascending (negative amounts).
    pub taxes: Vec<DocTax>,
    /// What was handed back, by method (positive amounts).
    pub refunds: Vec<Refund>,
    /// A void gives back the cash rounding of its sale too (its negative).
    #[schema(value_type = String, example = "0.00")]
    pub cash_rounding: String,
    pub reason_code: String,
    pub approval_ref: Option<String>,
    /// Who approved (user id), when an approval was used.
    pub approved_by: Option<Uuid>,
    /// The customer it names (the sale's, or the one named without a receipt), if any.
    pub customer_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// One line given back.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReturnLine {
    pub line_no: i32,
    /// The sale's line (none without a receipt).
    pub sale_line_no: Option<i32>,
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    /// Given back (positive).
    #[schema(value_type = String, example = "1.000")]
    pub quantity: String,
    #[schema(value_type = String, example = "2.50")]
    pub unit_price: String,
    /// Negative: what it refunds.
    #[schema(value_type = String, example = "-2.50")]
    pub total: String,
    #[schema(value_type = String, example = "0.19")]
    pub tax_rate: String,
    /// Back on the shelf (`true`) or written off as damaged.
    pub restock: bool,
}

/// Document totals (negative).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocTotals {
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub total: String,
}

/// The taxes of one rate (negative).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DocTax {
    #[schema(value_type = String, example = "0.19")]
    pub rate: String,
    #[schema(value_type = String)]
    pub net: String,
    #[schema(value_type = String)]
    pub tax: String,
    #[schema(value_type = String)]
    pub gross: String,
}

/// One refund.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Refund {
    /// `cash`, `card`, `voucher` or `other`.
    pub method: String,
    #[schema(value_type = String, example = "2.50")]
    pub amount: String,
}

/// A document to write (amounts as stored: totals and taxes negative, refunds positive).
#[derive(Debug)]
pub struct NewDoc<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub register_id: Uuid,
    pub cash_session_id: Uuid,
    pub cashier_id: Uuid,
    pub original_sale_id: Option<Uuid>,
    pub year: i32,
    pub seq: i64,
    pub number: &'a str,
    pub currency: &'a str,
    pub prices_include_tax: bool,
    pub net: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub cash_rounding: Decimal,
    pub refunds: &'a [(String, Decimal)],
    /// (rate, net, tax, gross), negative.
    pub taxes: &'a [(Decimal, Decimal, Decimal, Decimal)],
    pub reason_code: &'a str,
    pub approval_ref: Option<&'a str>,
    pub approved_by: Option<Uuid>,
    pub location_id: Uuid,
    pub request_hash: &'a [u8],
    pub customer_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

/// A line to write (total negative).
#[derive(Debug, Clone)]
pub struct NewLine {
    pub sale_line_no: Option<i32>,
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub total: Decimal,
    pub tax_rate: Decimal,
    pub restock: bool,
}

/// The next number of `register_id`'s correction series in `year` (the counter row stays locked
/// until the transaction ends, so a rolled-back document gives its number back).
pub async fn next_number(
    tx: &mut AuditedTx,
    register_id: Uuid,
    year: i32,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO return_counters AS c (register_id, year, last_number) VALUES ($1, $2, 1) \
         ON CONFLICT (register_id, year) DO UPDATE SET last_number = c.last_number + 1 RETURNING c.last_number",
    )
    .bind(register_id)
    .bind(year)
    .fetch_one(&mut **tx)
    .await
}

/// Why a line cannot give back what was asked.
#[derive(Debug)]
pub enum NotReturnable {
    /// More than sold less earlier returns (line number).
    TooMuch(i32),
    Db(sqlx::Error),
}

/// Adds `quantity` to what line `line_no` of `sale_id` (which sold `sold`) gave back, under the
/// row's lock; answers what it had given back before.
pub async fn add_returned(
    tx: &mut AuditedTx,
    sale_id: Uuid,
    line_no: i32,
    sold: Decimal,
    quantity: Decimal,
) -> Result<Decimal, NotReturnable> {
    sqlx::query_scalar(
        "INSERT INTO returned_quantities AS r (sale_id, line_no, sold, returned) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sale_id, line_no) DO UPDATE SET returned = r.returned + EXCLUDED.returned \
         RETURNING r.returned - $4",
    )
    .bind(sale_id)
    .bind(line_no)
    .bind(sold)
    .bind(quantity)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| match violated_constraint(&e) {
        Some("returned_not_above_sold") => NotReturnable::TooMuch(line_no),
        _ => NotReturnable::Db(e),
    })
}

/// What each line of `sale_id` gave back so far.
pub async fn returned(
    conn: &mut PgConnection,
    sale_id: Uuid,
) -> Result<HashMap<i32, Decimal>, sqlx::Error> {
    let rows: Vec<(i32, Decimal)> =
        sqlx::query_as("SELECT line_no, returned FROM returned_quantities WHERE sale_id = $1")
            .bind(sale_id)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Is sale `sale_id` voided, and has it any return? (void id, returns)
pub async fn corrected(
    conn: &mut PgConnection,
    sale_id: Uuid,
) -> Result<(Option<Uuid>, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT id FROM returns WHERE original_sale_id = $1 AND kind = 'void'), \
                (SELECT count(*) FROM returns WHERE original_sale_id = $1 AND kind = 'return')",
    )
    .bind(sale_id)
    .fetch_one(conn)
    .await
}

/// Writes the document and its lines.
pub async fn insert(
    tx: &mut AuditedTx,
    d: &NewDoc<'_>,
    lines: &[NewLine],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO returns (id, kind, register_id, cash_session_id, cashier_id, original_sale_id, number_year, number_seq, \
           number, currency, prices_include_tax, net, tax, total, cash_rounding, refund_methods, refund_amounts, \
           tax_rates, tax_nets, tax_amounts, tax_grosses, reason_code, approval_ref, approved_by, location_id, request_hash, created_at, \
           customer_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
    )
    .bind(d.id)
    .bind(d.kind)
    .bind(d.register_id)
    .bind(d.cash_session_id)
    .bind(d.cashier_id)
    .bind(d.original_sale_id)
    .bind(d.year)
    .bind(d.seq)
    .bind(d.number)
    .bind(d.currency)
    .bind(d.prices_include_tax)
    .bind(d.net)
    .bind(d.tax)
    .bind(d.total)
    .bind(d.cash_rounding)
    .bind(d.refunds.iter().map(|r| r.0.clone()).collect::<Vec<_>>())
    .bind(d.refunds.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(d.taxes.iter().map(|t| t.0).collect::<Vec<_>>())
    .bind(d.taxes.iter().map(|t| t.1).collect::<Vec<_>>())
    .bind(d.taxes.iter().map(|t| t.2).collect::<Vec<_>>())
    .bind(d.taxes.iter().map(|t| t.3).collect::<Vec<_>>())
    .bind(d.reason_code)
    .bind(d.approval_ref)
    .bind(d.approved_by)
    .bind(d.location_id)
    .bind(d.request_hash)
    .bind(d.at)
    .bind(d.customer_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO return_lines (return_id, line_no, sale_line_no, product_id, sku, name, quantity, unit_price, total, tax_rate, restock) \
         SELECT $1, l.n, l.sale_line_no, l.product_id, l.sku, l.name, l.quantity, l.unit_price, l.total, l.tax_rate, l.restock \
         FROM unnest($2::int[], $3::uuid[], $4::text[], $5::text[], $6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[], $10::bool[]) \
           WITH ORDINALITY AS l(sale_line_no, product_id, sku, name, quantity, unit_price, total, tax_rate, restock, n)",
    )
    .bind(d.id)
    .bind(lines.iter().map(|l| l.sale_line_no).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.product_id).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.sku.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.name.clone()).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.quantity).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.unit_price).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.total).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.tax_rate).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.restock).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .map(drop)
}

#[derive(sqlx::FromRow)]
struct DocRow {
    id: Uuid,
    kind: String,
    number: String,
    original_sale_id: Option<Uuid>,
    register_id: Uuid,
    cash_session_id: Uuid,
    cashier_id: Uuid,
    currency: String,
    prices_include_tax: bool,
    net: Decimal,
    tax: Decimal,
    total: Decimal,
    cash_rounding: Decimal,
    refund_methods: Vec<String>,
    refund_amounts: Vec<Decimal>,
    tax_rates: Vec<Decimal>,
    tax_nets: Vec<Decimal>,
    tax_amounts: Vec<Decimal>,
    tax_grosses: Vec<Decimal>,
    reason_code: String,
    approval_ref: Option<String>,
    approved_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    customer_id: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
struct LineRow {
    line_no: i32,
    sale_line_no: Option<i32>,
    product_id: Uuid,
    sku: String,
    name: String,
    quantity: Decimal,
    unit_price: Decimal,
    total: Decimal,
    tax_rate: Decimal,
    restock: bool,
}

const SELECT: &str = "SELECT id, kind, number, original_sale_id, register_id, cash_session_id, cashier_id, \
    currency::text AS currency, prices_include_tax, net, tax, total, cash_rounding, refund_methods, refund_amounts, \
    tax_rates, tax_nets, tax_amounts, tax_grosses, reason_code, approval_ref, approved_by, created_at, customer_id FROM returns";

/// Document `id`, or `None`.
pub async fn load(
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<Option<ReturnDoc>, sqlx::Error> {
    let Some(row): Option<DocRow> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(None);
    };
    let lines: Vec<LineRow> = sqlx::query_as(
        "SELECT line_no, sale_line_no, product_id, sku, name, quantity, unit_price, total, tax_rate, restock \
         FROM return_lines WHERE return_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(present(row, lines, scale)))
}

/// Document `d` with `lines` as [`load`] will read it back once written (the batch writer
/// answers with it rather than reading it back).
pub fn as_shown(d: &NewDoc<'_>, lines: &[NewLine], scale: u32) -> ReturnDoc {
    let row = DocRow {
        id: d.id,
        kind: d.kind.to_owned(),
        number: d.number.to_owned(),
        original_sale_id: d.original_sale_id,
        register_id: d.register_id,
        cash_session_id: d.cash_session_id,
        cashier_id: d.cashier_id,
        currency: d.currency.to_owned(),
        prices_include_tax: d.prices_include_tax,
        net: d.net,
        tax: d.tax,
        total: d.total,
        cash_rounding: d.cash_rounding,
        refund_methods: d.refunds.iter().map(|r| r.0.clone()).collect(),
        refund_amounts: d.refunds.iter().map(|r| r.1).collect(),
        tax_rates: d.taxes.iter().map(|t| t.0).collect(),
        tax_nets: d.taxes.iter().map(|t| t.1).collect(),
        tax_amounts: d.taxes.iter().map(|t| t.2).collect(),
        tax_grosses: d.taxes.iter().map(|t| t.3).collect(),
        reason_code: d.reason_code.to_owned(),
        approval_ref: d.approval_ref.map(str::to_owned),
        approved_by: d.approved_by,
        created_at: d.at,
        customer_id: d.customer_id,
    };
    let lines = (1..)
        .zip(lines)
        .map(|(line_no, l)| LineRow {
            line_no,
            sale_line_no: l.sale_line_no,
            product_id: l.product_id,
            sku: l.sku.clone(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            total: l.total,
            tax_rate: l.tax_rate,
            restock: l.restock,
        })
        .collect();
    present(row, lines, scale)
}

fn present(row: DocRow, lines: Vec<LineRow>, scale: u32) -> ReturnDoc {
    ReturnDoc {
        id: row.id,
        kind: row.kind,
        number: row.number,
        original_sale_id: row.original_sale_id,
        register_id: row.register_id,
        cash_session_id: row.cash_session_id,
        cashier_id: row.cashier_id,
        currency: row.currency,
        prices_include_tax: row.prices_include_tax,
        lines: lines
            .into_iter()
            .map(|l| ReturnLine {
                line_no: l.line_no,
                sale_line_no: l.sale_line_no,
                product_id: l.product_id,
                sku: l.sku,
                name: l.name,
                quantity: round_half_up(l.quantity, QUANTITY_SCALE).to_string(),
                unit_price: show(l.unit_price, scale),
                total: show(l.total, scale),
                tax_rate: l.tax_rate.normalize().to_string(),
                restock: l.restock,
            })
            .collect(),
        totals: DocTotals {
            net: show(row.net, scale),
            tax: show(row.tax, scale),
            total: show(row.total, scale),
        },
        taxes: row
            .tax_rates
            .into_iter()
            .zip(row.tax_nets)
            .zip(row.tax_amounts)
            .zip(row.tax_grosses)
            .map(|(((rate, net), tax), gross)| DocTax {
                rate: rate.normalize().to_string(),
                net: show(net, scale),
                tax: show(tax, scale),
                gross: show(gross, scale),
            })
            .collect(),
        refunds: row
            .refund_methods
            .into_iter()
            .zip(row.refund_amounts)
            .map(|(method, amount)| Refund {
                method,
                amount: show(amount, scale),
            })
            .collect(),
        cash_rounding: show(row.cash_rounding, scale),
        reason_code: row.reason_code,
        approval_ref: row.approval_ref,
        approved_by: row.approved_by,
        customer_id: row.customer_id,
        created_at: row.created_at,
    }
}

/// Which documents a list shows.
#[derive(Debug, Default)]
pub struct Filter {
    pub kind: Option<String>,
    pub original_sale_id: Option<Uuid>,
    pub register_id: Option<Uuid>,
    pub cashier_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Up to `limit` documents of `filter`, newest first, after the (created_at, id) `after`.
pub async fn list(
    conn: &mut PgConnection,
    filter: &Filter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
    scale: u32,
) -> Result<Vec<(DateTime<Utc>, ReturnDoc)>, sqlx::Error> {
    let rows: Vec<DocRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE ($1::text IS NULL OR kind = $1) AND ($2::uuid IS NULL OR original_sale_id = $2) \
           AND ($3::uuid IS NULL OR register_id = $3) AND ($4::uuid IS NULL OR cashier_id = $4) \
           AND ($5::timestamptz IS NULL OR created_at >= $5) AND ($6::timestamptz IS NULL OR created_at < $6) \
           AND ($7::timestamptz IS NULL OR (created_at, id) < ($7, $8)) \
         ORDER BY created_at DESC, id DESC LIMIT $9"
    )))
    .bind(&filter.kind)
    .bind(filter.original_sale_id)
    .bind(filter.register_id)
    .bind(filter.cashier_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    #[derive(sqlx::FromRow)]
    struct ListedLine {
        return_id: Uuid,
        #[sqlx(flatten)]
        line: LineRow,
    }
    let lines: Vec<ListedLine> = sqlx::query_as(
        "SELECT return_id, line_no, sale_line_no, product_id, sku, name, quantity, unit_price, total, tax_rate, restock \
         FROM return_lines WHERE return_id = ANY($1) ORDER BY return_id, line_no",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_doc: HashMap<Uuid, Vec<LineRow>> = HashMap::new();
    for l in lines {
        by_doc.entry(l.return_id).or_default().push(l.line);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let lines = by_doc.remove(&row.id).unwrap_or_default();
            (row.created_at, present(row, lines, scale))
        })
        .collect())
}

/// Was document `id` written by this request (this cashier and body)? `None`: no such document.
pub async fn same_request(
    conn: &mut PgConnection,
    id: Uuid,
    cashier: Uuid,
    request_hash: &[u8],
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT cashier_id = $2 AND request_hash = $3 FROM returns WHERE id = $1")
        .bind(id)
        .bind(cashier)
        .bind(request_hash)
        .fetch_optional(conn)
        .await
}

/// The corrections of sale `id`, for its read (provided to sales: `CorrectionsSource`).
pub async fn corrections(
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<Corrections, sqlx::Error> {
    {
        let docs: Vec<(Uuid, String, String, Decimal, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, kind, number, total, created_at FROM returns WHERE original_sale_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let returned = returned(conn, id).await?;
        let voided_by = docs.iter().find(|d| d.1 == "void").map(|d| d.0);
        Ok(Corrections {
            returns: docs
                .into_iter()
                .filter(|d| d.1 == "return")
                .map(|(id, kind, number, total, created_at)| CorrectionRef {
                    id,
                    kind,
                    number,
                    total: show(total, scale),
                    created_at,
                })
                .collect(),
            voided_by,
            returned,
        })
    }
}

/// The returns and voids of cash session `id` (provided to cash: `SessionRefundsSource`).
pub async fn session_refunds(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<SessionRefunds, sqlx::Error> {
    {
        let (returns, voids, net, tax, total): (i64, i64, Decimal, Decimal, Decimal) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE kind = 'return'), count(*) FILTER (WHERE kind = 'void'), \
                    COALESCE(sum(net), 0), COALESCE(sum(tax), 0), COALESCE(sum(total), 0) \
             FROM returns WHERE cash_session_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
        let by_method: Vec<(String, i64, Decimal)> = sqlx::query_as(
            "SELECT r.method, count(*), sum(r.amount) FROM returns d, unnest(d.refund_methods, d.refund_amounts) AS r(method, amount) \
             WHERE d.cash_session_id = $1 GROUP BY r.method ORDER BY r.method",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let cash_refunded = by_method
            .iter()
            .filter(|(m, _, _)| m == "cash")
            .map(|(_, _, a)| *a)
            .sum();
        Ok(SessionRefunds {
            returns,
            voids,
            net,
            tax,
            total,
            by_method,
            cash_refunded,
        })
    }
}

/// See [`crate::plugs::operations::api::returns::period_totals`].
pub async fn period_totals(
    conn: &mut PgConnection,
    registers: &[Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<CorrectionsPeriod, sqlx::Error> {
    const IN_PERIOD: &str = "register_id = ANY($1) AND created_at >= $2 AND created_at < $3";
    let kinds: Vec<(String, i64, Decimal, Decimal, Decimal)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT kind, count(*), sum(net), sum(tax), sum(total) FROM returns WHERE {IN_PERIOD} GROUP BY kind"
    )))
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = CorrectionsPeriod::default();
    for (kind, count, net, tax, total) in kinds {
        let totals = KindTotals {
            count,
            net,
            tax,
            total,
        };
        match kind.as_str() {
            "void" => out.voids = totals,
            _ => out.returns = totals,
        }
    }
    out.refunds_by_method = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT r.method, count(*), sum(r.amount) FROM returns d, unnest(d.refund_methods, d.refund_amounts) AS r(method, amount) \
         WHERE d.{IN_PERIOD} GROUP BY r.method ORDER BY r.method"
    )))
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    out.by_rate = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.rate, sum(t.net), sum(t.tax), sum(t.gross) \
         FROM returns d, unnest(d.tax_rates, d.tax_nets, d.tax_amounts, d.tax_grosses) AS t(rate, net, tax, gross) \
         WHERE d.{IN_PERIOD} GROUP BY t.rate ORDER BY t.rate"
    )))
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    out.numbers = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT f.register_id, f.count, f.first, l.last FROM \
           (SELECT DISTINCT ON (register_id) register_id, number AS first, count(*) OVER (PARTITION BY register_id) AS count \
              FROM returns WHERE {IN_PERIOD} ORDER BY register_id, created_at, number_seq) f \
         JOIN (SELECT DISTINCT ON (register_id) register_id, number AS last \
              FROM returns WHERE {IN_PERIOD} ORDER BY register_id, created_at DESC, number_seq DESC) l USING (register_id) \
         ORDER BY f.register_id"
    )))
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    Ok(out)
}

/// See [`crate::plugs::operations::api::returns::first_at`].
pub async fn first_at(
    conn: &mut PgConnection,
    registers: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(created_at) FROM returns WHERE register_id = ANY($1) AND created_at >= $2 AND created_at < $3",
    )
    .bind(registers)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await
}

/// The returns and voids that name `customer` before position `before` (newest first), at most
/// `limit` (see [`crate::plugs::management::api::customers::ReturnsOfCustomers`]).
pub async fn customer_documents(
    conn: &mut PgConnection,
    customer: Uuid,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<CustomerDocument>, sqlx::Error> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        String,
        Uuid,
        String,
        DateTime<Utc>,
        String,
        Decimal,
        sqlx::types::Json<serde_json::Value>,
    )> = sqlx::query_as(
        "SELECT r.kind, r.id, r.number, r.created_at, r.currency::text, r.total, \
           (SELECT coalesce(json_agg(json_build_object('line_no', l.line_no, 'product_id', l.product_id, 'sku', l.sku, \
              'name', l.name, 'quantity', l.quantity::text, 'unit_price', l.unit_price::text, 'total', l.total::text) \
              ORDER BY l.line_no), '[]'::json) FROM return_lines l WHERE l.return_id = r.id) \
         FROM returns r WHERE r.customer_id = $1 AND ($2::timestamptz IS NULL OR (r.created_at, r.id) < ($2, $3)) \
         ORDER BY r.created_at DESC, r.id DESC LIMIT $4",
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
            |(kind, id, number, at, currency, total, lines)| CustomerDocument {
                kind,
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

/// Each customer's latest return or void.
pub async fn customers_latest(
    conn: &mut PgConnection,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, max(created_at) FROM returns WHERE customer_id IS NOT NULL GROUP BY customer_id",
    )
    .fetch_all(conn)
    .await
}
