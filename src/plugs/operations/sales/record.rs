//! Recording prepared sales: a batch of them in one audited statement, so that concurrent sales
//! share one round trip and one commit.
//!
//! The statement ([`WRITE`]) share-locks the open cash sessions of the batch's registers (in
//! register order), leaves out sales whose register has none and sales whose client-made id
//! exists already, advances each (register, year) receipt counter by the number of its sales that
//! are written (in key order) and numbers them in batch order, claims their idempotency keys,
//! inserts the sales with their payments and tax buckets, takes their goods off stock (levels in
//! product order), inserts their lines (a tracked line with its product's level right after it:
//! the line is that stock movement) and appends one audit record per sale. All writers run this same
//! statement, whose parts PostgreSQL runs in the same order every time (sessions, then counters,
//! then the rows that depend on the numbers), each part taking its rows in key order: concurrent
//! batches wait for each other but do not deadlock (should the database ever break one, the batch
//! is tried again). It commits or fails as a whole, so a failure gives every number and key back
//! and numbering stays gap-free.

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::prepare::{PreparedSale, no_open_session};
use super::store::Sale;
use crate::core::audit::{AuditError, AuditedStatement};
use crate::core::http::ApiError;
use crate::core::http::idempotency::{self, CLAIM_CTE, StoredKey, is_key_race, key_reused};
use crate::plugs::management::api::stock::{TAKE_CTES, TakeColumns};
use crate::plugs::operations::api::cash;
use crate::shared::ids::new_id;

const SCOPE: &str = "sales";
/// How often a batch is tried again when a key it claimed was committed meanwhile (a racing
/// retry) or the database broke a deadlock by failing it.
const ATTEMPTS: usize = 3;

/// What became of one prepared sale.
#[derive(Debug)]
pub enum Written {
    /// Recorded now.
    Recorded(Box<Sale>),
    /// A retry (same key or same client id) of the sale with this id, which stands.
    Replay(Uuid),
}

/// One sale's answer.
pub type Outcome = Result<Written, ApiError>;

/// What the batch does with one sale.
enum Plan {
    Done(Outcome),
    /// A retry of sale `index` of this batch.
    SameAs(usize),
    /// To be written, if its register has an open session and its client id is new.
    Candidate,
}

/// The sales' own CTEs, before the key, stock, line and audit parts. `$1` is the recording time;
/// `{OPEN}` stands for the cash module's part that share-locks the open sessions of `$23`.
const SALE_CTES: &str = "cand AS (SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::int[], $5::text[], $6::int[], $7::uuid[], \
         $8::text[], $9::bool[], $10::numeric[], $11::numeric[], $12::numeric[], $13::numeric[], $14::numeric[], $15::text[], \
         $16::bytea[], $17::uuid[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $47::bool[], $48::uuid[], \
         $49::int[], $50::int[], $51::int[], $52::int[]) \
       WITH ORDINALITY AS c(id, register_id, year, template, digits, cashier_id, currency, pit, net, tax, total, rounding, change, \
         key, request_hash, audit_id, audit_base, username, role, workstation_id, request_id, client, location_id, p_from, p_to, t_from, t_to, ord)), \
     taken AS (SELECT c.ord FROM cand c, LATERAL (SELECT 1 FROM sales s WHERE s.id = c.id LIMIT 1) x WHERE c.client), \
     {OPEN}, \
     fresh AS (SELECT c.*, o.session_id, row_number() OVER (PARTITION BY c.register_id, c.year ORDER BY c.ord) AS rn \
       FROM cand c JOIN open o USING (register_id) WHERE c.ord NOT IN (SELECT ord FROM taken)), \
     counted AS (SELECT register_id, year, count(*) AS n FROM fresh GROUP BY register_id, year), \
     counters AS (INSERT INTO receipt_counters AS rc (register_id, year, last_number) \
       SELECT register_id, year, n FROM counted ORDER BY register_id, year \
       ON CONFLICT (register_id, year) DO UPDATE SET last_number = rc.last_number + EXCLUDED.last_number \
       RETURNING rc.register_id, rc.year, rc.last_number), \
     w AS (SELECT f.*, q.seq, replace(f.template, '{number}', \
           CASE WHEN length(q.seq::text) >= f.digits THEN q.seq::text ELSE lpad(q.seq::text, f.digits, '0') END) AS number \
       FROM fresh f JOIN counted g USING (register_id, year) JOIN counters k USING (register_id, year), \
         LATERAL (SELECT k.last_number - g.n + f.rn AS seq) q), \
     keys_in AS (SELECT 'sales'::text AS scope, key, request_hash, id AS resource_id, cashier_id AS user_id FROM w), \
     sales_in AS (INSERT INTO sales (id, register_id, cash_session_id, cashier_id, receipt_year, receipt_seq, receipt_number, \
         status, currency, prices_include_tax, net, tax, total, cash_rounding, change_due, created_at, location_id, \
         payment_methods, payment_amounts, tax_rates, tax_nets, tax_amounts, tax_grosses) \
       SELECT id, register_id, session_id, cashier_id, year, seq, number, 'completed', currency, pit, net, tax, total, rounding, change, $1, location_id, \
         ($36::text[])[p_from:p_to], ($37::numeric[])[p_from:p_to], ($38::numeric[])[t_from:t_to], \
         ($39::numeric[])[t_from:t_to], ($40::numeric[])[t_from:t_to], ($41::numeric[])[t_from:t_to] \
       FROM w ORDER BY ord), \
     stock_in AS (SELECT m.product_id, m.location_id, m.delta, m.document_id, m.line_no, m.ord \
       FROM unnest($42::uuid[], $43::uuid[], $44::numeric[], $45::uuid[], $46::int[]) \
         WITH ORDINALITY AS m(product_id, location_id, delta, document_id, line_no, ord) \
       WHERE m.document_id IN (SELECT id FROM w))";

/// The written sales' lines, after [`TAKE_CTES`]: a tracked line carries its product's level
/// right after it, which makes the line that product's stock movement (the `stock_ledger` view).
const LINES_IN: &str = "lines_in AS (INSERT INTO sale_lines (sale_id, line_no, product_id, sku, name, quantity, catalog_price, \
         unit_price, discount, total, tax_class_id, tax_rate, stock_after) \
       SELECT l.*, a.quantity_after FROM unnest($24::uuid[], $25::int[], $26::uuid[], $27::text[], $28::text[], $29::numeric[], \
         $30::numeric[], $31::numeric[], $32::numeric[], $33::numeric[], $34::uuid[], $35::numeric[]) AS l(sale_id, line_no) \
         LEFT JOIN stock_after a ON a.document_id = l.sale_id AND a.line_no = l.line_no \
       WHERE l.sale_id IN (SELECT id FROM w))";

/// One audit record per written sale: what the request knew, with the receipt number, the
/// session and, per tracked line, its product's level right after it added. The `after` JSON is
/// built as text: `audit_base` is the request's part without its closing brace, and the rest are
/// a JSON string (`to_json`), UUIDs and numbers, which need no escaping (as `jsonb`, parsing the
/// request's part and building the objects was about 5 % of the writers' time; PERFORMANCE.md).
const AUDIT_IN: &str = "audit_in AS (SELECT w.audit_id AS id, w.cashier_id AS actor_user_id, w.username AS actor_username, \
       w.role AS actor_role, w.workstation_id, NULL::uuid AS branch_id, 'operations.sales'::text AS module, 'sale'::text AS entity, \
       w.id::text AS entity_id, 'sale.complete'::text AS action, NULL::text AS before_json, \
       w.audit_base || ',\"receipt_number\":' || to_json(w.number)::text || ',\"cash_session_id\":\"' || w.session_id \
         || '\",\"stock\":[' || COALESCE((SELECT string_agg('{\"product_id\":\"' || a.product_id || '\",\"location_id\":\"' \
              || a.location_id || '\",\"line_no\":' || a.line_no || ',\"delta\":\"' || a.delta || '\",\"quantity\":\"' \
              || a.quantity_after || '\"}', ',' ORDER BY a.ord) \
            FROM stock_after a WHERE a.document_id = w.id), '') || ']}' AS after_json, \
       NULL::text AS reason_code, NULL::text AS approval_ref, w.request_id \
     FROM w ORDER BY w.ord)";

/// Per candidate, in order: its session and number when written, else whether its id was taken.
const RESULT: &str = "SELECT c.ord, w.session_id, w.number, c.ord IN (SELECT ord FROM taken) AS taken \
     FROM cand c LEFT JOIN w USING (ord) ORDER BY c.ord";

/// The one statement that records a batch.
static WRITE: LazyLock<AuditedStatement> = LazyLock::new(|| {
    AuditedStatement::new(
        &format!(
            "{}, {CLAIM_CTE}, {}, {LINES_IN}, {AUDIT_IN}",
            SALE_CTES.replace("{OPEN}", &cash::open_sessions_cte(23)),
            TAKE_CTES.ctes()
        ),
        RESULT,
    )
});

/// Records `sales` at `now` in one statement and gives each one's outcome, in order. On a
/// database error nothing is recorded (the caller may try the sales one by one).
pub async fn record_batch(
    pool: &PgPool,
    sales: &[&PreparedSale],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>, AuditError> {
    // A key is normally new here. A retry of a committed sale (or a racing retry that committed
    // first) fails the claim; the batch then reads its keys and replays those sales.
    let mut stored = HashMap::new();
    let mut attempt = 1;
    loop {
        match write(pool, sales, &stored, now).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(e) if attempt < ATTEMPTS && (is_key_race(&e) || is_deadlock(&e)) => {
                attempt += 1;
                let keys: Vec<&str> = sales.iter().map(|s| s.key.as_str()).collect();
                stored = idempotency::find_all(&mut *pool.acquire().await?, SCOPE, &keys).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_deadlock(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("40P01")
}

/// One try.
async fn write(
    pool: &PgPool,
    sales: &[&PreparedSale],
    stored: &HashMap<String, StoredKey>,
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut plans = pre_plan(sales, stored);
    let candidates: Vec<usize> = (0..sales.len())
        .filter(|&i| matches!(plans[i], Plan::Candidate))
        .collect();
    let mut recorded = HashMap::new();
    if !candidates.is_empty() {
        let (c, mut provisional) = SaleColumns::new(sales, &candidates, now);
        let rows: Vec<(i64, Option<Uuid>, Option<String>, bool)> = sqlx::query_as(WRITE.sql())
            .bind(now)
            .bind(&c.id)
            .bind(&c.register_id)
            .bind(&c.year)
            .bind(&c.template)
            .bind(&c.digits)
            .bind(&c.cashier_id)
            .bind(&c.currency)
            .bind(&c.prices_include_tax)
            .bind(&c.net)
            .bind(&c.tax)
            .bind(&c.total)
            .bind(&c.cash_rounding)
            .bind(&c.change_due)
            .bind(&c.key)
            .bind(&c.request_hash)
            .bind(&c.audit_id)
            .bind(&c.audit_base)
            .bind(&c.username)
            .bind(&c.role)
            .bind(&c.workstation_id)
            .bind(&c.request_id)
            .bind(&c.registers)
            .bind(&c.l_sale)
            .bind(&c.l_no)
            .bind(&c.l_product)
            .bind(&c.l_sku)
            .bind(&c.l_name)
            .bind(&c.l_quantity)
            .bind(&c.l_catalog_price)
            .bind(&c.l_unit_price)
            .bind(&c.l_discount)
            .bind(&c.l_total)
            .bind(&c.l_tax_class)
            .bind(&c.l_tax_rate)
            .bind(&c.p_method)
            .bind(&c.p_amount)
            .bind(&c.t_rate)
            .bind(&c.t_net)
            .bind(&c.t_tax)
            .bind(&c.t_gross)
            .bind(&c.stock.product_id)
            .bind(&c.stock.location_id)
            .bind(&c.stock.delta)
            .bind(&c.stock.document_id)
            .bind(&c.stock.line_no)
            .bind(&c.client)
            .bind(&c.location_id)
            .bind(&c.p_from)
            .bind(&c.p_to)
            .bind(&c.t_from)
            .bind(&c.t_to)
            .fetch_all(pool)
            .await?;
        WRITE.committed();
        for (ord, session, number, taken) in rows {
            let Some(k) = usize::try_from(ord - 1)
                .ok()
                .filter(|&k| k < candidates.len())
            else {
                continue;
            };
            let index = candidates[k];
            match (session, number, provisional[k].take()) {
                (Some(session), Some(number), Some(mut sale)) => {
                    sale.cash_session_id = session;
                    sale.receipt_number = number;
                    recorded.insert(index, sale);
                }
                _ if taken => plans[index] = Plan::Done(Ok(Written::Replay(sales[index].id))),
                _ => plans[index] = Plan::Done(Err(no_open_session())),
            }
        }
    }
    // A retry of a sale of this batch that was refused is refused alike.
    for i in 0..plans.len() {
        if let Plan::SameAs(first) = plans[i]
            && matches!(plans[first], Plan::Done(Err(_)))
        {
            plans[i] = Plan::Done(Err(no_open_session()));
        }
    }
    Ok(finish(plans, recorded, sales))
}

/// What committed requests already decide, in batch order: replays of stored keys, and retries
/// of an earlier sale of this batch (same key, or same client-made id). The rest are candidates.
fn pre_plan(sales: &[&PreparedSale], stored: &HashMap<String, StoredKey>) -> Vec<Plan> {
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    let mut by_id: HashMap<Uuid, usize> = HashMap::new();
    let mut plans = Vec::with_capacity(sales.len());
    for (i, sale) in sales.iter().enumerate() {
        let plan = if let Some(stored) = stored.get(&sale.key) {
            Plan::Done(stored.replay_for(&sale.request_hash).map(Written::Replay))
        } else if let Some(&first) = by_key.get(sale.key.as_str()) {
            if sales[first].request_hash == sale.request_hash {
                Plan::SameAs(first)
            } else {
                Plan::Done(Err(key_reused()))
            }
        } else if let Some(&first) = by_id.get(&sale.id) {
            Plan::SameAs(first)
        } else {
            by_key.insert(sale.key.as_str(), i);
            by_id.insert(sale.id, i);
            Plan::Candidate
        };
        plans.push(plan);
    }
    plans
}

fn finish(
    plans: Vec<Plan>,
    mut recorded: HashMap<usize, Sale>,
    sales: &[&PreparedSale],
) -> Vec<Outcome> {
    plans
        .into_iter()
        .enumerate()
        .map(|(i, plan)| match plan {
            Plan::Done(outcome) => outcome,
            Plan::SameAs(first) => Ok(Written::Replay(sales[first].id)),
            Plan::Candidate => match recorded.remove(&i) {
                Some(sale) => Ok(Written::Recorded(Box::new(sale))),
                None => Err(ApiError::Internal(anyhow::anyhow!(
                    "sale {} was planned but not recorded",
                    sales[i].id
                ))),
            },
        })
        .collect()
}

/// The candidates of a batch as the statement's column arrays.
#[derive(Default)]
struct SaleColumns {
    id: Vec<Uuid>,
    register_id: Vec<Uuid>,
    year: Vec<i32>,
    template: Vec<String>,
    digits: Vec<i32>,
    cashier_id: Vec<Uuid>,
    currency: Vec<String>,
    prices_include_tax: Vec<bool>,
    net: Vec<Decimal>,
    tax: Vec<Decimal>,
    total: Vec<Decimal>,
    cash_rounding: Vec<Decimal>,
    change_due: Vec<Decimal>,
    key: Vec<String>,
    request_hash: Vec<Vec<u8>>,
    audit_id: Vec<Uuid>,
    /// The audit record's `after` as far as the request knows it, without its closing brace.
    audit_base: Vec<String>,
    username: Vec<Option<String>>,
    role: Vec<Option<String>>,
    workstation_id: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    /// The id came from the client (so it may exist already).
    client: Vec<bool>,
    /// Where each sale takes its goods from (its register's location).
    location_id: Vec<Uuid>,
    /// The batch's registers, sorted: their sessions are locked in this order.
    registers: Vec<Uuid>,
    l_sale: Vec<Uuid>,
    l_no: Vec<i32>,
    l_product: Vec<Uuid>,
    l_sku: Vec<String>,
    l_name: Vec<String>,
    l_quantity: Vec<Decimal>,
    l_catalog_price: Vec<Decimal>,
    l_unit_price: Vec<Decimal>,
    l_discount: Vec<Decimal>,
    l_total: Vec<Decimal>,
    l_tax_class: Vec<Uuid>,
    l_tax_rate: Vec<Decimal>,
    /// The batch's payments and tax buckets, sale after sale; sale `k`'s are elements
    /// `p_from[k]..=p_to[k]` and `t_from[k]..=t_to[k]` (1-based; none when `to < from`), which
    /// the statement slices into the sale's array columns.
    p_method: Vec<String>,
    p_amount: Vec<Decimal>,
    t_rate: Vec<Decimal>,
    t_net: Vec<Decimal>,
    t_tax: Vec<Decimal>,
    t_gross: Vec<Decimal>,
    p_from: Vec<i32>,
    p_to: Vec<i32>,
    t_from: Vec<i32>,
    t_to: Vec<i32>,
    stock: TakeColumns,
}

impl SaleColumns {
    /// The columns of `sales[candidates]` recorded at `now`, and each candidate's sale as it will
    /// be answered, but for its session and receipt number (known once written).
    fn new(
        sales: &[&PreparedSale],
        candidates: &[usize],
        now: DateTime<Utc>,
    ) -> (SaleColumns, Vec<Option<Sale>>) {
        let mut c = SaleColumns::default();
        let mut provisional = Vec::with_capacity(candidates.len());
        for &i in candidates {
            let prepared = sales[i];
            let sale = prepared.to_sale(Uuid::nil(), String::new(), now);
            let year = now.with_timezone(&prepared.business.timezone).year();
            let priced = &prepared.priced;
            c.id.push(sale.id);
            c.register_id.push(sale.register_id);
            c.year.push(year);
            c.template.push(
                prepared
                    .business
                    .receipt_template(&prepared.register_code, year),
            );
            c.digits
                .push(i32::try_from(prepared.business.receipt_digits).unwrap_or(i32::MAX));
            c.cashier_id.push(sale.cashier_id);
            c.currency.push(sale.currency.clone());
            c.prices_include_tax.push(sale.prices_include_tax);
            c.net.push(priced.net);
            c.tax.push(priced.tax);
            c.total.push(priced.total);
            c.cash_rounding.push(priced.cash_rounding);
            c.change_due.push(priced.change_due);
            c.key.push(prepared.key.clone());
            c.request_hash.push(prepared.request_hash.clone());
            c.audit_id.push(new_id());
            c.audit_base.push(audit_open(&prepared.audit_base(&sale)));
            c.username.push(prepared.actor.username.clone());
            c.role.push(prepared.actor.role.clone());
            c.workstation_id.push(prepared.actor.workstation_id.clone());
            c.request_id.push(prepared.actor.request_id.clone());
            c.client.push(prepared.client_id);
            c.location_id.push(prepared.location_id);
            c.registers.push(sale.register_id);
            for ((line_no, (product, input)), total) in
                (1..).zip(&prepared.lines).zip(&priced.line_totals)
            {
                c.l_sale.push(sale.id);
                c.l_no.push(line_no);
                c.l_product.push(product.id);
                c.l_sku.push(product.sku.clone());
                c.l_name.push(product.name.clone());
                c.l_quantity.push(input.quantity);
                c.l_catalog_price.push(product.price);
                c.l_unit_price.push(input.unit_price);
                c.l_discount.push(input.discount);
                c.l_total.push(*total);
                c.l_tax_class.push(product.tax_class_id);
                c.l_tax_rate.push(input.tax_rate);
            }
            c.p_from.push(position_after(c.p_method.len()));
            for (method, amount) in &prepared.payments {
                c.p_method.push(method.clone());
                c.p_amount.push(*amount);
            }
            c.p_to.push(position_after(c.p_method.len()) - 1);
            c.t_from.push(position_after(c.t_rate.len()));
            for t in &priced.taxes {
                c.t_rate.push(t.rate);
                c.t_net.push(t.net);
                c.t_tax.push(t.tax);
                c.t_gross.push(t.gross);
            }
            c.t_to.push(position_after(c.t_rate.len()) - 1);
            c.stock
                .push(sale.id, prepared.location_id, &prepared.tracked_lines());
            provisional.push(Some(sale));
        }
        c.registers.sort_unstable();
        c.registers.dedup();
        (c, provisional)
    }
}

/// `object` as JSON text without its closing brace, for the statement to add fields to.
fn audit_open(object: &serde_json::Value) -> String {
    let mut text = object.to_string();
    debug_assert!(text.len() > 2 && text.ends_with('}'), "a non-empty object");
    text.pop();
    text
}

/// The 1-based position of the element after the first `len` of an array.
fn position_after(len: usize) -> i32 {
    i32::try_from(len + 1).unwrap_or(i32::MAX)
}
