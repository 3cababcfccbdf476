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

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::columns::SaleColumns;
use super::prepare::{PreparedSale, id_conflict};
use super::store::Sale;
use crate::core::audit::parts::{self, SqlJson};
use crate::core::audit::{AuditError, AuditedPart, AuditedStatement};
use crate::core::http::ApiError;
use crate::core::idempotency::{self, CLAIM_CTE, StoredKey, is_key_race, key_reused};
use crate::plugs::management::api::stock::TAKE_CTES;
use crate::plugs::operations::api::cash;

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

/// The batch's candidate sales, and those whose client-made id exists already: the columns of
/// [`SaleColumns`] from `id` to `t_to`, in that order.
const CANDIDATES: AuditedPart = AuditedPart::new(
    "cand AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::int[], $6::uuid[], \
         $7::text[], $8::bool[], $9::numeric[], $10::numeric[], $11::numeric[], $12::numeric[], $13::numeric[], $14::text[], \
         $15::bytea[], $16::uuid[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::bool[], $23::uuid[], \
         $24::int[], $25::int[], $26::int[], $27::int[], $28::uuid[], $29::numeric[], $30::text[], $31::text[], $32::uuid[]) \
       WITH ORDINALITY AS c(id, register_id, year, template, digits, cashier_id, currency, pit, net, tax, total, rounding, change, \
         key, request_hash, audit_id, audit_base, username, role, workstation_id, request_id, client, location_id, p_from, p_to, t_from, t_to, \
         expected_session, discount_total, discount_detail, approval_ref, customer_id, ord)), \
     taken AS (SELECT c.ord, x.same FROM cand c, LATERAL (SELECT s.cashier_id = c.cashier_id \
         AND (s.request_hash IS NULL OR s.request_hash = c.request_hash) AS same FROM sales s WHERE s.id = c.id LIMIT 1) x \
       WHERE c.client)",
    32,
    &["cand", "taken"],
);

/// After cash's `open` (the batch's open sessions, share-locked): the sales that get a number
/// (their register has an open session, their id is new), the receipt counters advanced, the
/// numbers formatted, the keys to claim, the sale rows with their payments and tax buckets
/// (sliced out of the batch's arrays `$1..$6`: methods, amounts, rates, nets, taxes, grosses)
/// recorded at `$now`, and the goods to take off stock (`$7..$11`: [`TakeColumns`]).
const NUMBERED: AuditedPart = AuditedPart::new(
    "fresh AS (SELECT c.*, o.session_id, row_number() OVER (PARTITION BY c.register_id, c.year ORDER BY c.ord) AS rn \
       FROM cand c JOIN open o ON o.register_id = c.register_id AND o.session_id = c.expected_session \
       WHERE c.ord NOT IN (SELECT ord FROM taken)), \
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
         payment_methods, payment_amounts, tax_rates, tax_nets, tax_amounts, tax_grosses, request_hash, \
         discount_total, discount_detail, approval_ref, customer_id) \
       SELECT id, register_id, session_id, cashier_id, year, seq, number, 'completed', currency, pit, net, tax, total, rounding, change, $now, location_id, \
         ($1::text[])[p_from:p_to], ($2::numeric[])[p_from:p_to], ($3::numeric[])[t_from:t_to], \
         ($4::numeric[])[t_from:t_to], ($5::numeric[])[t_from:t_to], ($6::numeric[])[t_from:t_to], request_hash, \
         discount_total, discount_detail::jsonb, approval_ref, customer_id \
       FROM w ORDER BY ord), \
     stock_in AS (SELECT m.product_id, m.location_id, m.delta, m.document_id, m.line_no, m.ord \
       FROM unnest($7::uuid[], $8::uuid[], $9::numeric[], $10::uuid[], $11::int[]) \
         WITH ORDINALITY AS m(product_id, location_id, delta, document_id, line_no, ord) \
       WHERE m.document_id IN (SELECT id FROM w))",
    11,
    &[
        "fresh", "counted", "counters", "w", "keys_in", "sales_in", "stock_in",
    ],
)
.reading(&["cand", "taken", "open"]);

/// Claiming the written sales' idempotency keys (`keys_in`).
const CLAIM: AuditedPart = AuditedPart::new(CLAIM_CTE, 0, &["keys_claimed"]).reading(&["keys_in"]);

/// The written sales' lines (`$1..$14`), after [`TAKE_CTES`]: a tracked line carries its
/// product's level right after it, which makes the line that product's stock movement (the
/// `stock_ledger` view), and every line its product's cost price as the sale read it (with its
/// price, `unit_cost`, for margins). Each written sale is queued for the report rollups (`queued`, see `rollup`).
const LINES_IN: AuditedPart = AuditedPart::new(
    "lines_in AS (INSERT INTO sale_lines (sale_id, line_no, product_id, sku, name, quantity, catalog_price, \
         unit_price, discount, total, tax_class_id, tax_rate, price_rule, stock_after, unit_cost) \
       SELECT l.sale_id, l.line_no, l.product_id, l.sku, l.name, l.quantity, l.catalog_price, l.unit_price, l.discount, \
         l.total, l.tax_class_id, l.tax_rate, l.price_rule::jsonb, a.quantity_after, l.unit_cost \
       FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::text[], $5::text[], $6::numeric[], \
         $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[], $11::uuid[], $12::numeric[], $13::text[], \
         $14::numeric[]) \
         AS l(sale_id, line_no, product_id, sku, name, quantity, catalog_price, unit_price, discount, total, tax_class_id, \
           tax_rate, price_rule, unit_cost) \
         LEFT JOIN stock_after a ON a.document_id = l.sale_id AND a.line_no = l.line_no \
       WHERE l.sale_id IN (SELECT id FROM w)), \
     queued AS (INSERT INTO report_queue (sale_id) SELECT id FROM w)",
    14,
    &["lines_in", "queued"],
)
.reading(&["w", "stock_after"]);

/// One audit record per written sale: what the request knew (`audit_base`, serialized once in
/// Rust without its closing brace) with the receipt number, the session and, per tracked line,
/// its product's level right after it, added by the statement as JSON text
/// (`core::audit::parts`; as `jsonb`, parsing the request's part and building the objects was
/// about 5 % of the writers' time, PERFORMANCE.md).
fn audit_in() -> String {
    let after = audit_after_sql();
    format!(
        "audit_in AS (SELECT w.audit_id AS id, w.cashier_id AS actor_user_id, w.username AS actor_username, \
           w.role AS actor_role, w.workstation_id, NULL::uuid AS branch_id, 'operations.sales'::text AS module, 'sale'::text AS entity, \
           w.id::text AS entity_id, 'sale.complete'::text AS action, NULL::text AS before_json, \
           {after} AS after_json, \
           NULL::text AS reason_code, w.approval_ref, w.request_id \
         FROM w ORDER BY w.ord)"
    )
}

/// The SQL expression of a sale record's `after` JSON, over the CTE row `w` and the sale's rows
/// of `stock_after` (public for the test that holds it byte-identical to earlier releases').
pub fn audit_after_sql() -> String {
    let stock = parts::array(
        &parts::object(&[
            ("product_id", SqlJson::Plain("a.product_id")),
            ("location_id", SqlJson::Plain("a.location_id")),
            ("line_no", SqlJson::Number("a.line_no")),
            ("delta", SqlJson::Plain("a.delta")),
            ("quantity", SqlJson::Plain("a.quantity_after")),
        ]),
        "a.ord",
        "FROM stock_after a WHERE a.document_id = w.id",
    );
    parts::after_json(
        "w.audit_base",
        &[
            ("receipt_number", SqlJson::Text("w.number")),
            ("cash_session_id", SqlJson::Plain("w.session_id")),
            ("stock", SqlJson::Json(&stock)),
        ],
    )
}

/// Per candidate, in order: its session and number when written, else whether its id was taken
/// and, if so, by this same request (the same cashier and body).
const RESULT: &str = "SELECT c.ord, w.session_id, w.number, t.ord IS NOT NULL AS taken, COALESCE(t.same, false) AS same \
     FROM cand c LEFT JOIN w USING (ord) LEFT JOIN taken t USING (ord) ORDER BY c.ord";

/// The one statement that records a batch: the sales' parts around cash's, the keys, stock's,
/// the lines and the audit records, each numbering its own parameters.
static WRITE: LazyLock<AuditedStatement> = LazyLock::new(|| {
    let audit_in = audit_in();
    let audit_part =
        AuditedPart::new(audit_in.leak(), 0, &["audit_in"]).reading(&["w", "stock_after"]);
    AuditedStatement::compose(
        &[
            CANDIDATES,
            cash::OPEN_SESSIONS,
            NUMBERED,
            CLAIM,
            TAKE_CTES,
            LINES_IN,
            audit_part,
        ],
        RESULT,
    )
});

/// Composes the writer's statement now (the sales module's `install` calls it when the state is
/// made), so a part that breaks the composition rules stops the start, not the first sale.
pub fn compose_statement() {
    LazyLock::force(&WRITE);
}

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
        let rows = run(pool, &c, now).await?;
        WRITE.committed();
        for (ord, session, number, taken, same) in rows {
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
                _ if taken && same => {
                    plans[index] = Plan::Done(Ok(Written::Replay(sales[index].id)))
                }
                _ if taken => plans[index] = Plan::Done(Err(id_conflict())),
                _ => plans[index] = Plan::Done(Err(cash::no_open_session())),
            }
        }
    }
    // A retry of a sale of this batch that was refused is refused alike.
    for i in 0..plans.len() {
        if let Plan::SameAs(first) = plans[i]
            && matches!(plans[first], Plan::Done(Err(_)))
        {
            plans[i] = Plan::Done(Err(cash::no_open_session()));
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
            let same = sales[first].cashier_id == sale.cashier_id
                && sales[first].request_hash == sale.request_hash;
            match same {
                true => Plan::SameAs(first),
                false => Plan::Done(Err(id_conflict())),
            }
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

/// Runs [`WRITE`] over the batch's columns: binds the record time, then each part's parameters
/// in the order of the parts. Per candidate: (order, session, receipt number, id taken, by the same request).
async fn run<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    c: &SaleColumns,
    now: DateTime<Utc>,
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_as(WRITE.sql())
        .bind(now)
        // CANDIDATES
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
        .bind(&c.client)
        .bind(&c.location_id)
        .bind(&c.p_from)
        .bind(&c.p_to)
        .bind(&c.t_from)
        .bind(&c.t_to)
        .bind(&c.session_id)
        .bind(&c.discount_total)
        .bind(&c.discount_detail)
        .bind(&c.approval_ref)
        .bind(&c.customer_id)
        // cash::OPEN_SESSIONS
        .bind(&c.registers)
        // NUMBERED
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
        // LINES_IN
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
        .bind(&c.l_price_rule)
        .bind(&c.l_unit_cost)
        .fetch_all(executor)
        .await
}

/// Per candidate: (order, session, receipt number, id taken, by the same request).
pub(super) type Row = (i64, Option<Uuid>, Option<String>, bool, bool);

/// Records `sales` (all candidates, client-made ids) in the caller's transaction `conn` at `now`
/// (the offline push, which checked their numbers under the counters' locks): the statement's
/// row per sale, in order, and each sale as it will be answered but for its session and number.
pub(super) async fn record_in(
    conn: &mut sqlx::PgConnection,
    sales: &[&PreparedSale],
    now: DateTime<Utc>,
) -> Result<(Vec<Row>, Vec<Option<Sale>>), sqlx::Error> {
    let candidates: Vec<usize> = (0..sales.len()).collect();
    let (c, provisional) = SaleColumns::new(sales, &candidates, now);
    let rows = run(&mut *conn, &c, now).await?;
    Ok((rows, provisional))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_composes_its_parts_and_numbers_every_parameter_once() {
        let sql = WRITE.sql();
        let declared = 1
            + CANDIDATES.params()
            + cash::OPEN_SESSIONS.params()
            + NUMBERED.params()
            + LINES_IN.params();
        assert_eq!(declared, 59, "the binds in `run`");
        for n in 1..=declared {
            assert!(
                sql.contains(&format!("${n}:"))
                    || sql.contains(&format!("${n},"))
                    || sql.contains(&format!("${n})"))
                    || sql.contains(&format!("${n} ")),
                "${n} is used"
            );
        }
        assert!(
            !sql.contains(&format!("${}", declared + 1)),
            "no parameter past ${declared}"
        );
        assert!(!sql.contains("$now"));
    }
}
