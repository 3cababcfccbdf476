//! Recording checked returns in batches: one statement for all the returns the writer
//! ([`super::writer`]) took together, as the sales writer records sales, so that a return costs
//! about what a sale costs (each used to be an audited transaction of its own with some twenty
//! round trips).
//!
//! Each request checked its return's fields, sale and lines, the register's open session, and used
//! its approval (bound to its request, like a sale's, for the refund it priced). The writer reads
//! the batch's sales' books (what each line gave back so far, what earlier returns refunded per
//! tax rate, the sale's void: `BOOKS`) in one query, prices the returns in batch order against
//! them, the returns accepted before added (two returns of one sale in one batch count against
//! each other), and leaves out those that do not fit (409 `return.exceeds_returnable`, 422
//! `refund.mismatch`).
//! Then `WRITE`, one statement that commits or fails as a whole: the open sessions share-locked
//! and each return's checked again, the keys claimed, the returns numbered in their registers'
//! correction series (gap-free), their lines, the running totals (returned quantities, refunds per
//! rate) with the books each was computed against checked under their row locks, the goods back
//! ([`PUT_BACK_PART`]), the reviews queued ([`ENQUEUE_PART`]), one audit record per return with
//! its own request's actor. Whatever no longer fits fails it with a named check
//! (`refuse_statement`): books changed meanwhile (another return or a void of the sale) make the
//! writer read them again and price again; a key a committed retry holds makes it replay; a
//! closed session, more than was sold or a closed day leave the batch to be written return by
//! return, so the one that fails fails alone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::MODULE;
use super::rules::{line_refund, refund_buckets, share_of_bucket};
use super::store::{self, NewDoc, NewLine, ReturnDoc};
use crate::core::audit::parts::{self, SqlJson};
use crate::core::audit::{Actor, AuditError, AuditedPart, AuditedStatement};
use crate::core::db::violated_constraint;
use crate::core::http::ApiError;
use crate::core::idempotency::{self, CLAIM_CTE, StoredKey, is_key_race};
use crate::core::jobs::{ENQUEUE_PART, JobColumns, WAKE_IF_QUEUED};
use crate::core::settings::Business;
use crate::plugs::management::api::catalog::SaleProduct;
use crate::plugs::management::api::stock::{
    ComingBack, PUT_BACK_PART, PutBackColumns, levels_after_json,
};
use crate::plugs::operations::api::approvals::Used;
use crate::plugs::operations::api::cash;
use crate::plugs::operations::api::sales::{SoldLine, SoldSale, TaxBucket};
use crate::shared::ids::new_id;
use crate::shared::money::{round_half_up, show};

const SCOPE: &str = "returns";
/// How often a batch is tried again when the database broke a deadlock by failing it.
const ATTEMPTS: usize = 3;

/// A line as checked, before its refund is known.
#[derive(Debug, Clone)]
pub struct Asked {
    pub sale_line: Option<SoldLine>,
    pub product: Option<SaleProduct>,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub restock: bool,
}

/// A return as its request checked it, waiting to be recorded.
pub struct PreparedReturn {
    pub id: Uuid,
    /// Who asks: the audit record's actor.
    pub actor: Actor,
    pub user_id: Uuid,
    pub register_id: Uuid,
    pub register_code: String,
    pub location_id: Uuid,
    /// The register's open session, as the request found it (the writer checks it again).
    pub session_id: Uuid,
    pub sale: Option<SoldSale>,
    /// The customer the return names (the sale's, or one named without a receipt).
    pub customer_id: Option<Uuid>,
    pub asked: Vec<Asked>,
    /// (method, amount), positive.
    pub refunds: Vec<(String, Decimal)>,
    pub reason_code: String,
    /// The approval the request used (for the refund the request priced, which its refunds
    /// must add up to, so the writer's price cannot exceed it unrefused).
    pub approval: Option<Used>,
    /// Was `id` made by the client (a retry with it replays)?
    pub client_id: bool,
    /// The scoped idempotency key and the body's digest.
    pub key: String,
    pub hash: Vec<u8>,
    pub business: Business,
    /// A return an offline till pushed: where it came from, for its audit record.
    pub offline: Option<Value>,
}

/// What became of one return.
#[derive(Debug)]
pub enum Recorded {
    New(Box<ReturnDoc>),
    /// A retry of the return with this id, which stands.
    Replay(Uuid),
}

/// One return's answer.
pub type Outcome = Result<Recorded, ApiError>;

/// 409 `return.exceeds_returnable`.
pub fn exceeds(line_no: i32) -> ApiError {
    ApiError::Conflict {
        code: "return.exceeds_returnable",
        detail: format!(
            "Line {line_no} cannot give back that much: not more than was sold less what earlier returns gave back (see the sale's `returnable`)."
        ),
    }
}

/// 409 `sale.voided`.
pub fn voided() -> ApiError {
    ApiError::Conflict {
        code: "sale.voided",
        detail: "This sale was voided; nothing of it is left to return.".to_owned(),
    }
}

/// The (register, year) number of a correction: the receipt format with `R` and the padded
/// counter in place of `{number}` (the `WRITE` statement formats it the same way).
pub fn correction_number(business: &Business, register_code: &str, year: i32, seq: i64) -> String {
    let digits = business.receipt_digits;
    business
        .receipt_template(register_code, year)
        .replace("{number}", &format!("R{seq:0digits$}"))
}

/// A sale's books, per sale of `$1`: `q` a line's returned quantity, `r` what its returns
/// refunded at a tax rate (rate, net, gross; positive), `v` its void.
const BOOKS: &str = "SELECT 'q'::text, sale_id, line_no, returned, NULL::numeric, NULL::numeric \
       FROM returned_quantities WHERE sale_id = ANY($1) \
     UNION ALL SELECT 'r', sale_id, NULL::int, rate, net, gross FROM returned_taxes WHERE sale_id = ANY($1) \
     UNION ALL SELECT 'v', original_sale_id, NULL, NULL, NULL, NULL FROM returns \
       WHERE kind = 'void' AND original_sale_id = ANY($1)";

/// The returns' own rows, after cash's `open` (the batch's open sessions, share-locked): the
/// documents (`$1..$22` and their keys `$48`, one row each, refunds and tax buckets sliced out of
/// `$23..$28`), numbered per (register, year) in batch order; their lines (`$29..$39`); the
/// quantities given back per sale line (`$40..$43`, with what each was computed against, `$49`)
/// and the refunds per sale and tax rate (`$44..$47`, against `$50..$51`), added to the running
/// totals; `keys_in` for the claim; `ret_refused`, which fails the statement when a session or
/// the books are not what the returns were computed against.
const DOCUMENTS: AuditedPart = AuditedPart::new(
    "ret_docs AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::int[], $7::text[], \
         $8::int[], $9::text[], $10::bool[], $11::numeric[], $12::numeric[], $13::numeric[], $14::text[], $15::text[], \
         $16::uuid[], $17::uuid[], $18::bytea[], $19::int[], $20::int[], $21::int[], $22::int[], $48::text[], $52::uuid[]) \
       WITH ORDINALITY AS d(id, register_id, session_id, cashier_id, sale_id, year, template, digits, currency, pit, net, tax, \
         total, reason_code, approval_ref, approved_by, location_id, request_hash, r_from, r_to, t_from, t_to, key, customer_id, ord)), \
     ret_counted AS (SELECT register_id, year, count(*) AS n FROM ret_docs GROUP BY register_id, year), \
     ret_counters AS (INSERT INTO return_counters AS rc (register_id, year, last_number) \
       SELECT register_id, year, n FROM ret_counted ORDER BY register_id, year \
       ON CONFLICT (register_id, year) DO UPDATE SET last_number = rc.last_number + EXCLUDED.last_number \
       RETURNING rc.register_id, rc.year, rc.last_number), \
     ret_numbered AS (SELECT d.*, q.seq, replace(d.template, '{number}', 'R' || \
           CASE WHEN length(q.seq::text) >= d.digits THEN q.seq::text ELSE lpad(q.seq::text, d.digits, '0') END) AS number \
       FROM (SELECT r.*, row_number() OVER (PARTITION BY r.register_id, r.year ORDER BY r.ord) AS rn FROM ret_docs r) d \
         JOIN ret_counted g USING (register_id, year) JOIN ret_counters k USING (register_id, year), \
         LATERAL (SELECT k.last_number - g.n + d.rn AS seq) q), \
     ret_written AS (INSERT INTO returns (id, kind, register_id, cash_session_id, cashier_id, original_sale_id, number_year, \
         number_seq, number, currency, prices_include_tax, net, tax, total, cash_rounding, refund_methods, refund_amounts, \
         tax_rates, tax_nets, tax_amounts, tax_grosses, reason_code, approval_ref, approved_by, location_id, request_hash, created_at, \
         customer_id) \
       SELECT id, 'return', register_id, session_id, cashier_id, sale_id, year, seq, number, currency, pit, net, tax, total, 0, \
         ($23::text[])[r_from:r_to], ($24::numeric[])[r_from:r_to], ($25::numeric[])[t_from:t_to], \
         ($26::numeric[])[t_from:t_to], ($27::numeric[])[t_from:t_to], ($28::numeric[])[t_from:t_to], \
         reason_code, approval_ref, approved_by, location_id, request_hash, $now, customer_id \
       FROM ret_numbered ORDER BY ord), \
     ret_lines AS (INSERT INTO return_lines (return_id, line_no, sale_line_no, product_id, sku, name, quantity, unit_price, \
         total, tax_rate, restock) \
       SELECT * FROM unnest($29::uuid[], $30::int[], $31::int[], $32::uuid[], $33::text[], $34::text[], $35::numeric[], \
         $36::numeric[], $37::numeric[], $38::numeric[], $39::bool[])), \
     ret_back AS (SELECT * FROM unnest($40::uuid[], $41::int[], $42::numeric[], $43::numeric[], $49::numeric[]) \
         AS u(sale_id, line_no, sold, returned, assumed)), \
     ret_returned AS (INSERT INTO returned_quantities AS q (sale_id, line_no, sold, returned) \
       SELECT sale_id, line_no, sold, returned FROM ret_back ORDER BY sale_id, line_no \
       ON CONFLICT (sale_id, line_no) DO UPDATE SET returned = q.returned + EXCLUDED.returned \
       RETURNING q.sale_id, q.line_no, q.returned), \
     ret_rated AS (SELECT * FROM unnest($44::uuid[], $45::numeric[], $46::numeric[], $47::numeric[], $50::numeric[], \
         $51::numeric[]) AS u(sale_id, rate, net, gross, assumed_net, assumed_gross)), \
     ret_taxed AS (INSERT INTO returned_taxes AS t (sale_id, rate, net, gross) \
       SELECT sale_id, rate, net, gross FROM ret_rated ORDER BY sale_id, rate \
       ON CONFLICT (sale_id, rate) DO UPDATE SET net = t.net + EXCLUDED.net, gross = t.gross + EXCLUDED.gross \
       RETURNING t.sale_id, t.rate, t.net, t.gross), \
     keys_in AS (SELECT 'returns'::text AS scope, key, request_hash, id AS resource_id, cashier_id AS user_id FROM ret_docs), \
     ret_refused AS (SELECT refuse_statement('return_session_closed', 'the register''s cash session is no longer the one the return was checked against') \
         FROM ret_docs d WHERE NOT EXISTS (SELECT 1 FROM open o WHERE o.register_id = d.register_id AND o.session_id = d.session_id) \
       UNION ALL SELECT refuse_statement('return_books_changed', 'a return or void of the sale was recorded meanwhile') \
         FROM ret_returned r JOIN ret_back b USING (sale_id, line_no) WHERE r.returned - b.returned <> b.assumed \
       UNION ALL SELECT refuse_statement('return_books_changed', 'a return of the sale was recorded meanwhile') \
         FROM ret_taxed t JOIN ret_rated x USING (sale_id, rate) WHERE t.net - x.net <> x.assumed_net OR t.gross - x.gross <> x.assumed_gross)",
    52,
    &[
        "ret_docs",
        "ret_counted",
        "ret_counters",
        "ret_numbered",
        "ret_written",
        "ret_lines",
        "ret_back",
        "ret_returned",
        "ret_rated",
        "ret_taxed",
        "keys_in",
        "ret_refused",
    ],
)
.reading(&["open"]);

/// One audit record per written return: what the request knew (`$2`, its `after` serialized in
/// Rust without its closing brace, see `parts::open_object`), with the number and the stock
/// movements added by the statement.
fn audit_part() -> AuditedPart {
    let stock = levels_after_json("n.id");
    let after = parts::after_json(
        "a.base",
        &[
            ("number", SqlJson::Text("n.number")),
            ("stock", SqlJson::Json(&stock)),
        ],
    );
    let text = format!(
        "ret_audit AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[]) \
           WITH ORDINALITY AS a(audit_id, base, user_id, username, role, workstation_id, request_id, ord)), \
         audit_in AS (SELECT a.audit_id AS id, a.user_id AS actor_user_id, a.username AS actor_username, a.role AS actor_role, \
           a.workstation_id, NULL::uuid AS branch_id, '{MODULE}'::text AS module, 'return'::text AS entity, n.id::text AS entity_id, \
           'return.create'::text AS action, NULL::text AS before_json, {after} AS after_json, n.reason_code, n.approval_ref, \
           a.request_id \
         FROM ret_audit a JOIN ret_numbered n USING (ord) ORDER BY a.ord)"
    );
    AuditedPart::new(text.leak(), 7, &["ret_audit", "audit_in"])
        .reading(&["ret_numbered", "stock_back_after"])
}

/// Claiming the returns' keys (`keys_in`); a key a committed retry holds fails the statement.
const CLAIM: AuditedPart = AuditedPart::new(CLAIM_CTE, 0, &["keys_claimed"]).reading(&["keys_in"]);

/// The statement that records a batch; answers the numbers (`[ord, number, seq]`) as JSON text.
static WRITE: LazyLock<AuditedStatement> = LazyLock::new(|| {
    AuditedStatement::compose(
        &[
            cash::OPEN_SESSIONS,
            DOCUMENTS,
            CLAIM,
            PUT_BACK_PART,
            ENQUEUE_PART,
            audit_part(),
        ],
        &format!(
            "SELECT json_build_object(\
               'numbers', COALESCE((SELECT json_agg(json_build_array(ord, number, seq) ORDER BY ord) FROM ret_numbered), '[]'::json), \
               'refused', (SELECT count(*) FROM ret_refused), \
               'woken', {WAKE_IF_QUEUED})::text"
        ),
    )
});

/// Composes the statement now (the module's `install` calls it), so a part that breaks the
/// composition rules stops the start, not the first return.
pub fn compose_statements() {
    LazyLock::force(&WRITE);
}

/// What sales gave back so far, per sale: as read (`BOOKS`), and, in a batch, with the returns
/// accepted before added.
#[derive(Debug, Default, Clone)]
pub struct Books {
    returned: HashMap<(Uuid, i32), Decimal>,
    /// Per sale: (rate, net, gross) refunded, positive.
    by_rate: HashMap<Uuid, Vec<(Decimal, Decimal, Decimal)>>,
    voided: HashSet<Uuid>,
}

impl Books {
    /// The books of `sales`, read now.
    pub async fn read(conn: &mut PgConnection, sales: &[Uuid]) -> Result<Books, sqlx::Error> {
        let mut books = Books::default();
        if sales.is_empty() {
            return Ok(books);
        }
        type Row = (
            String,
            Uuid,
            Option<i32>,
            Option<Decimal>,
            Option<Decimal>,
            Option<Decimal>,
        );
        // Not prepared: a generic plan made while the tables were small scans them whole (they
        // grow with every return); planned per call, each part is a look-up by key.
        let rows: Vec<Row> = sqlx::query_as(BOOKS)
            .bind(sales)
            .persistent(false)
            .fetch_all(conn)
            .await?;
        for (tag, sale, line_no, a, b, c) in rows {
            match (tag.as_str(), line_no, a, b, c) {
                ("q", Some(line_no), Some(returned), _, _) => {
                    books.returned.insert((sale, line_no), returned);
                }
                ("r", _, Some(rate), Some(net), Some(gross)) => {
                    books
                        .by_rate
                        .entry(sale)
                        .or_default()
                        .push((rate, net, gross));
                }
                ("v", ..) => {
                    books.voided.insert(sale);
                }
                _ => {}
            }
        }
        Ok(books)
    }

    /// What sale line (`sale`, `line`) gave back so far.
    fn returned(&self, sale: Uuid, line: i32) -> Decimal {
        self.returned
            .get(&(sale, line))
            .copied()
            .unwrap_or_default()
    }

    /// What `sale`'s returns refunded at `rate` so far: (net, gross).
    fn refunded(&self, sale: Uuid, rate: Decimal) -> (Decimal, Decimal) {
        self.by_rate
            .get(&sale)
            .and_then(|rates| rates.iter().find(|b| b.0.normalize() == rate.normalize()))
            .map_or((Decimal::ZERO, Decimal::ZERO), |b| (b.1, b.2))
    }

    /// Counts accepted return `a` (of request `r`) in, for the returns after it in the batch.
    fn add(&mut self, r: &PreparedReturn, a: &Accepted) {
        let Some(sale) = &r.sale else {
            return;
        };
        for line in &a.lines {
            if let Some(n) = line.sale_line_no {
                *self.returned.entry((sale.id, n)).or_default() += line.quantity;
            }
        }
        let rates = self.by_rate.entry(sale.id).or_default();
        for &(rate, net, _, gross) in &a.taxes {
            match rates
                .iter_mut()
                .find(|b| b.0.normalize() == rate.normalize())
            {
                Some(b) => {
                    b.1 -= net;
                    b.2 -= gross;
                }
                None => rates.push((rate, -net, -gross)),
            }
        }
    }
}

/// A return as accepted: its lines priced and its (negative) taxes.
pub struct Accepted {
    index: usize,
    year: i32,
    prices_include_tax: bool,
    lines: Vec<NewLine>,
    coming_back: Vec<ComingBack>,
    /// (rate, net, tax, gross), negative.
    taxes: Vec<(Decimal, Decimal, Decimal, Decimal)>,
}

impl Accepted {
    fn sum(&self, part: impl Fn(&(Decimal, Decimal, Decimal, Decimal)) -> Decimal) -> Decimal {
        self.taxes.iter().map(part).sum()
    }

    /// The refund (positive).
    pub fn refund(&self) -> Decimal {
        -self.sum(|t| t.3)
    }
}

/// Records `returns` at `now` and gives each one's outcome, in order: in one statement, and
/// after it those that repeat a key or a client-made id of another in the batch; a statement
/// that fails is tried again return by return, so one that fails fails alone.
pub async fn record_batch(
    pool: &PgPool,
    returns: &[&PreparedReturn],
    now: DateTime<Utc>,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = (0..returns.len()).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..returns.len()).collect();
    while !pending.is_empty() {
        let (now_batch, later) = plan(returns, &pending);
        let batch: Vec<&PreparedReturn> = now_batch.iter().map(|&i| returns[i]).collect();
        let written = match write_with_retries(pool, &batch, now).await {
            Ok(written) => written,
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = %e, returns = batch.len(), "a batch of returns failed; recording them one by one");
                let mut written = Vec::with_capacity(batch.len());
                for r in &batch {
                    written.push(match write_with_retries(pool, &[r], now).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| Err(unanswered())),
                        Err(e) => alone_failed(pool, r, e).await,
                    });
                }
                written
            }
            Err(e) => vec![alone_failed(pool, batch[0], e).await],
        };
        for (i, outcome) in now_batch.into_iter().zip(written) {
            outcomes[i] = Some(outcome);
        }
        pending = later;
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(unanswered())))
        .collect()
}

fn unanswered() -> ApiError {
    ApiError::Internal(anyhow::anyhow!("a return of the batch was not answered"))
}

/// Writes `batch` (distinct keys and ids), again when a retry committed one of its keys first
/// (it then replays), when its sales' books changed meanwhile (read again), or when the database
/// broke a deadlock by failing it.
async fn write_with_retries(
    pool: &PgPool,
    batch: &[&PreparedReturn],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>, AuditError> {
    let sales: Vec<Uuid> = batch
        .iter()
        .filter_map(|r| r.sale.as_ref().map(|s| s.id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut books = Books::read(&mut *pool.acquire().await?, &sales).await?;
    let mut stored = HashMap::new();
    let mut attempt = 1;
    loop {
        let error = match write(pool, batch, &stored, &books, now).await {
            Ok(outcomes) => return Ok(outcomes),
            Err(e) if attempt >= ATTEMPTS => return Err(e.into()),
            Err(e) => e,
        };
        attempt += 1;
        let mut conn = pool.acquire().await?;
        if is_key_race(&error) {
            let keys: Vec<&str> = batch.iter().map(|r| r.key.as_str()).collect();
            stored = idempotency::find_all(&mut conn, SCOPE, &keys).await?;
        } else if matches!(
            violated_constraint(&error),
            // The running total's own check can fire before the statement's books check when
            // another writer's returns of the sale committed meanwhile: both mean read again.
            Some("return_books_changed" | "returned_not_above_sold")
        ) {
            books = Books::read(&mut conn, &sales).await?;
        } else if !is_deadlock(&error) {
            return Err(error.into());
        }
    }
}

fn is_deadlock(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).as_deref() == Some("40P01")
}

/// Splits `pending` into what is recorded now and what waits for that: a return whose key or
/// client-made id an earlier one of the batch has goes after it commits (and then replays it,
/// or is refused).
fn plan(returns: &[&PreparedReturn], pending: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut keys = HashSet::new();
    let mut ids = HashSet::new();
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for &i in pending {
        let r = returns[i];
        if keys.insert(r.key.as_str()) && ids.insert(r.id) {
            now.push(i);
        } else {
            later.push(i);
        }
    }
    (now, later)
}

/// One try: each return priced against the batch's sales' books as read, those that fit
/// written in one statement (which checks that the books are still what was read).
async fn write(
    pool: &PgPool,
    batch: &[&PreparedReturn],
    stored: &HashMap<String, StoredKey>,
    assumed: &Books,
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut outcomes: Vec<Option<Outcome>> = (0..batch.len()).map(|_| None).collect();
    let mut books = assumed.clone();
    let mut accepted = Vec::new();
    for (index, r) in batch.iter().enumerate() {
        if let Some(stored) = stored.get(&r.key) {
            outcomes[index] = Some(stored.replay_for(&r.hash).map(Recorded::Replay));
            continue;
        }
        match judge(r, index, &books, now) {
            Ok(a) => {
                books.add(r, &a);
                accepted.push(a);
            }
            Err(e) => outcomes[index] = Some(Err(e)),
        }
    }
    replay_refused(pool, batch, &mut outcomes).await?;
    if !accepted.is_empty() {
        let mut conn = pool.acquire().await?;
        for (index, doc) in write_documents(&mut conn, batch, &accepted, assumed, now).await? {
            outcomes[index] = Some(Ok(Recorded::New(Box::new(doc))));
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(unanswered())))
        .collect())
}

/// A refused return may be the retry of one that committed after its request looked for its key
/// or its client-made id (the retry read them as free, then found its lines given back): those
/// replay instead (or, for an id another request made, answer `return.id_conflict`).
async fn replay_refused(
    pool: &PgPool,
    batch: &[&PreparedReturn],
    outcomes: &mut [Option<Outcome>],
) -> Result<(), sqlx::Error> {
    let refused: Vec<&str> = batch
        .iter()
        .zip(outcomes.iter())
        .filter(|(_, o)| matches!(o, Some(Err(_))))
        .map(|(r, _)| r.key.as_str())
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    let stored = idempotency::find_all(&mut conn, SCOPE, &refused).await?;
    for (r, outcome) in batch.iter().zip(outcomes.iter_mut()) {
        if !matches!(outcome, Some(Err(_))) {
            continue;
        }
        if let Some(stored) = stored.get(&r.key) {
            *outcome = Some(stored.replay_for(&r.hash).map(Recorded::Replay));
        } else if r.client_id {
            match store::same_request(&mut conn, r.id, r.user_id, &r.hash).await? {
                Some(true) => *outcome = Some(Ok(Recorded::Replay(r.id))),
                Some(false) => *outcome = Some(Err(id_conflict())),
                None => {}
            }
        }
    }
    Ok(())
}

/// The answer for a return whose own statement failed: a client-made id that another request
/// recorded meanwhile is that request's return (a replay if it was this same request); a closed
/// session, more than is left to give back, a closed day (`period.closed`) are 409; a statement
/// that other writers kept changing under it after every try is 409 `return.contention`.
async fn alone_failed(pool: &PgPool, r: &PreparedReturn, e: AuditError) -> Outcome {
    let AuditError::Database(db) = e else {
        return Err(e.into());
    };
    // The retry of a request that committed meanwhile replays it, whatever failed.
    let mut conn = pool.acquire().await?;
    if let Some(stored) = idempotency::find(&mut conn, SCOPE, &r.key).await? {
        return stored.replay_for(&r.hash).map(Recorded::Replay);
    }
    drop(conn);
    match violated_constraint(&db) {
        Some("returns_pkey") => {
            let mut conn = pool.acquire().await?;
            match store::same_request(&mut conn, r.id, r.user_id, &r.hash).await? {
                Some(true) => Ok(Recorded::Replay(r.id)),
                _ => Err(id_conflict()),
            }
        }
        Some("return_session_closed") => Err(cash::no_open_session()),
        // A void racing the statement (it checks the books it priced against otherwise).
        Some("returned_not_above_sold") => Err(ApiError::Conflict {
            code: "return.exceeds_returnable",
            detail: "A line cannot give back that much: not more than was sold less what earlier returns gave back (see the sale's `returnable`).".to_owned(),
        }),
        Some("return_books_changed" | "idempotency_keys_pkey") => Err(contention()),
        _ if is_deadlock(&db) => Err(contention()),
        _ => {
            tracing::warn!(error = %db, return_id = %r.id, request_id = r.actor.request_id.as_deref().unwrap_or(""), "a return could not be recorded");
            Err(db.into())
        }
    }
}

/// 409 `return.contention`.
fn contention() -> ApiError {
    ApiError::Conflict {
        code: "return.contention",
        detail: "Other returns or a void of this sale kept changing it while this return was recorded; nothing was recorded: send the same request again.".to_owned(),
    }
}

/// 409 `return.id_conflict`.
pub fn id_conflict() -> ApiError {
    ApiError::Conflict {
        code: "return.id_conflict",
        detail: "A return with this id exists from another request; a new return needs a new id."
            .to_owned(),
    }
}

/// Prices return `r` (the `index`th of its batch) against `books`: accepted, or why not (its
/// sale voided, more than is left, refunds that do not add up to it).
pub fn judge(
    r: &PreparedReturn,
    index: usize,
    books: &Books,
    now: DateTime<Utc>,
) -> Result<Accepted, ApiError> {
    if let Some(sale) = &r.sale
        && books.voided.contains(&sale.id)
    {
        return Err(voided());
    }
    let scale = r.business.currency_scale;
    let prices_include_tax = r
        .sale
        .as_ref()
        .map_or(r.business.prices_include_tax, |s| s.prices_include_tax);
    let (lines, coming_back, taxes) = price(r, books, prices_include_tax, scale)?;
    let accepted = Accepted {
        index,
        year: now.with_timezone(&r.business.timezone).year(),
        prices_include_tax,
        lines,
        coming_back,
        taxes,
    };
    let refund_sum: Decimal = r.refunds.iter().map(|f| f.1).sum();
    if refund_sum != accepted.refund() {
        return Err(ApiError::Unprocessable {
            code: "refund.mismatch",
            detail: format!(
                "The refunds ({}) must add up to the return's total ({}).",
                show(refund_sum, scale),
                show(accepted.refund(), scale)
            ),
        });
    }
    Ok(accepted)
}

type Priced = (
    Vec<NewLine>,
    Vec<ComingBack>,
    Vec<(Decimal, Decimal, Decimal, Decimal)>,
);

/// What each line of `r` refunds against what its sale line has left in `books` (lines in
/// sale-line order), and the return's (negative) tax buckets.
fn price(
    r: &PreparedReturn,
    books: &Books,
    prices_include_tax: bool,
    scale: u32,
) -> Result<Priced, ApiError> {
    let mut refunded = vec![Decimal::ZERO; r.asked.len()];
    for (i, a) in r.asked.iter().enumerate() {
        refunded[i] = match (&a.sale_line, &r.sale) {
            (Some(line), Some(sale)) => {
                let before = books
                    .returned
                    .get(&(sale.id, line.line_no))
                    .copied()
                    .unwrap_or_default();
                if before + a.quantity > line.quantity {
                    return Err(exceeds(line.line_no));
                }
                line_refund(line.total, line.quantity, before, a.quantity, scale)
            }
            _ => round_half_up(a.quantity * a.unit_price, scale),
        };
    }
    let mut lines = Vec::with_capacity(r.asked.len());
    let mut coming_back = Vec::new();
    for ((line_no, a), refund) in (1..).zip(&r.asked).zip(refunded) {
        let (product_id, sku, name, tax_rate, tracked) = match (&a.sale_line, &a.product) {
            (Some(l), _) => (
                l.product_id,
                l.sku.clone(),
                l.name.clone(),
                l.tax_rate,
                l.tracked,
            ),
            (None, Some(p)) => (
                p.id,
                p.sku.clone(),
                p.name.clone(),
                p.tax_rate,
                p.track_stock,
            ),
            (None, None) => continue,
        };
        if tracked {
            coming_back.push(ComingBack {
                line_no,
                product_id,
                quantity: a.quantity,
                restock: a.restock,
            });
        }
        lines.push(NewLine {
            sale_line_no: a.sale_line.as_ref().map(|l| l.line_no),
            product_id,
            sku,
            name,
            quantity: a.quantity,
            unit_price: a.unit_price,
            total: -refund,
            tax_rate,
            restock: a.restock,
        });
    }
    let taxes = tax_shares(r, books, &lines, prices_include_tax, scale);
    Ok((lines, coming_back, taxes))
}

/// The (negative) tax buckets of a return's `lines`: per rate like a sale, and against a sale
/// each rate's tax as its share of the sale's own (`rules::share_of_bucket`).
fn tax_shares(
    r: &PreparedReturn,
    books: &Books,
    lines: &[NewLine],
    prices_include_tax: bool,
    scale: u32,
) -> Vec<(Decimal, Decimal, Decimal, Decimal)> {
    let rated: Vec<(Decimal, Decimal)> = lines.iter().map(|l| (l.tax_rate, -l.total)).collect();
    let mut buckets = refund_buckets(&rated, prices_include_tax, scale);
    if let Some(sale) = &r.sale {
        let before = books.by_rate.get(&sale.id).map_or(&[][..], Vec::as_slice);
        for bucket in &mut buckets {
            let Some(&(_, net, tax, gross)) =
                sale.taxes.iter().find(|t| t.0.normalize() == bucket.rate)
            else {
                continue;
            };
            let sold = TaxBucket {
                rate: bucket.rate,
                net,
                tax,
                gross,
            };
            let back = before
                .iter()
                .find(|b| b.0.normalize() == bucket.rate)
                .map_or(
                    Decimal::ZERO,
                    |b| if prices_include_tax { b.2 } else { b.1 },
                );
            // The refunds at this rate, in the terms the prices are in.
            let amount = if prices_include_tax {
                bucket.gross
            } else {
                bucket.net
            };
            *bucket = share_of_bucket(&sold, prices_include_tax, back, amount, scale);
        }
    }
    buckets
        .iter()
        .map(|b| (b.rate, -b.net, -b.tax, -b.gross))
        .collect()
}

/// The `WRITE` statement's parameters for the documents.
#[derive(Default)]
struct DocColumns<'a> {
    id: Vec<Uuid>,
    register_id: Vec<Uuid>,
    session_id: Vec<Uuid>,
    cashier_id: Vec<Uuid>,
    sale_id: Vec<Option<Uuid>>,
    year: Vec<i32>,
    template: Vec<String>,
    digits: Vec<i32>,
    currency: Vec<&'a str>,
    pit: Vec<bool>,
    net: Vec<Decimal>,
    tax: Vec<Decimal>,
    total: Vec<Decimal>,
    reason_code: Vec<&'a str>,
    approval_ref: Vec<Option<&'a str>>,
    approved_by: Vec<Option<Uuid>>,
    location_id: Vec<Uuid>,
    request_hash: Vec<Vec<u8>>,
    r_from: Vec<i32>,
    r_to: Vec<i32>,
    t_from: Vec<i32>,
    t_to: Vec<i32>,
    r_method: Vec<&'a str>,
    r_amount: Vec<Decimal>,
    t_rate: Vec<Decimal>,
    t_net: Vec<Decimal>,
    t_tax: Vec<Decimal>,
    t_gross: Vec<Decimal>,
    l_return: Vec<Uuid>,
    l_no: Vec<i32>,
    l_sale_line: Vec<Option<i32>>,
    l_product: Vec<Uuid>,
    l_sku: Vec<&'a str>,
    l_name: Vec<&'a str>,
    l_quantity: Vec<Decimal>,
    l_unit_price: Vec<Decimal>,
    l_total: Vec<Decimal>,
    l_tax_rate: Vec<Decimal>,
    l_restock: Vec<bool>,
    key: Vec<&'a str>,
    customer_id: Vec<Option<Uuid>>,
}

/// 1-based position of the next element of a flat array with `len` elements.
fn next_position(len: usize) -> i32 {
    i32::try_from(len + 1).unwrap_or(i32::MAX)
}

/// The parameters of the `WRITE` statement.
#[derive(Default)]
struct WriteColumns<'a> {
    docs: DocColumns<'a>,
    stock: PutBackColumns,
    jobs: JobColumns,
    /// (sale, line) -> (sold, given back now).
    returned: BTreeMap<(Uuid, i32), (Decimal, Decimal)>,
    /// (sale, rate) -> (net, gross) refunded now, positive.
    taxed: BTreeMap<(Uuid, Decimal), (Decimal, Decimal)>,
    audit: AuditColumns,
    /// The batch's registers, in order (their open sessions are share-locked).
    registers: BTreeSet<Uuid>,
}

/// The audit records' parameters of the `WRITE` statement (see [`audit_part`]).
#[derive(Default)]
struct AuditColumns {
    id: Vec<Uuid>,
    base: Vec<String>,
    user_id: Vec<Option<Uuid>>,
    username: Vec<Option<String>>,
    role: Vec<Option<String>>,
    workstation_id: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
}

impl<'a> WriteColumns<'a> {
    /// The columns of `accepted` (of `batch`), shown as `shown` (without their numbers).
    fn new(
        batch: &[&'a PreparedReturn],
        accepted: &'a [Accepted],
        shown: &[ReturnDoc],
        now: DateTime<Utc>,
    ) -> Self {
        let mut w = WriteColumns::default();
        for (a, doc) in accepted.iter().zip(shown) {
            let r = batch[a.index];
            w.docs.push(r, a);
            w.audit.id.push(new_id());
            w.audit.base.push(parts::open_object(&with_origin(
                audit_base(doc, r.approval.as_ref()),
                r,
            )));
            w.audit.user_id.push(r.actor.user_id);
            w.audit.username.push(r.actor.username.clone());
            w.audit.role.push(r.actor.role.clone());
            w.audit.workstation_id.push(r.actor.workstation_id.clone());
            w.audit.request_id.push(r.actor.request_id.clone());
            if let Some(sale) = &r.sale {
                for &(rate, net, _, gross) in &a.taxes {
                    let entry = w.taxed.entry((sale.id, rate.normalize())).or_default();
                    entry.0 -= net;
                    entry.1 -= gross;
                }
            }
            if let Some(sale) = &r.sale {
                for l in &a.lines {
                    let Some(sold) = l
                        .sale_line_no
                        .and_then(|n| sale.lines.iter().find(|s| s.line_no == n))
                    else {
                        continue;
                    };
                    let entry = w
                        .returned
                        .entry((sale.id, sold.line_no))
                        .or_insert((sold.quantity, Decimal::ZERO));
                    entry.1 += l.quantity;
                }
            }
            w.registers.insert(r.register_id);
            w.stock
                .push(r.id, r.location_id, &a.coming_back, "return", r.user_id);
            let (payload, key, run_at) = cash::review_job(r.user_id, now);
            w.jobs.push(&cash::REVIEW, &payload, Some(key), run_at);
        }
        w
    }
}

impl<'a> DocColumns<'a> {
    /// Adds return `r` as accepted (`a`): the document, its refunds and taxes, its lines.
    fn push(&mut self, r: &'a PreparedReturn, a: &'a Accepted) {
        let c = self;
        c.id.push(r.id);
        c.register_id.push(r.register_id);
        c.session_id.push(r.session_id);
        c.key.push(&r.key);
        c.cashier_id.push(r.user_id);
        c.sale_id.push(r.sale.as_ref().map(|s| s.id));
        c.customer_id.push(r.customer_id);
        c.year.push(a.year);
        c.template
            .push(r.business.receipt_template(&r.register_code, a.year));
        c.digits
            .push(i32::try_from(r.business.receipt_digits).unwrap_or(i32::MAX));
        c.currency.push(&r.business.currency);
        c.pit.push(a.prices_include_tax);
        c.net.push(a.sum(|t| t.1));
        c.tax.push(a.sum(|t| t.2));
        c.total.push(a.sum(|t| t.3));
        c.reason_code.push(&r.reason_code);
        c.approval_ref
            .push(r.approval.as_ref().map(|u| u.approval_ref.as_str()));
        c.approved_by
            .push(r.approval.as_ref().map(|u| u.approver_id));
        c.location_id.push(r.location_id);
        c.request_hash.push(r.hash.clone());
        c.r_from.push(next_position(c.r_method.len()));
        for (method, amount) in &r.refunds {
            c.r_method.push(method);
            c.r_amount.push(*amount);
        }
        c.r_to.push(next_position(c.r_method.len()) - 1);
        c.t_from.push(next_position(c.t_rate.len()));
        for &(rate, net, tax, gross) in &a.taxes {
            c.t_rate.push(rate);
            c.t_net.push(net);
            c.t_tax.push(tax);
            c.t_gross.push(gross);
        }
        c.t_to.push(next_position(c.t_rate.len()) - 1);
        for (line_no, l) in (1..).zip(&a.lines) {
            c.l_return.push(r.id);
            c.l_no.push(line_no);
            c.l_sale_line.push(l.sale_line_no);
            c.l_product.push(l.product_id);
            c.l_sku.push(&l.sku);
            c.l_name.push(&l.name);
            c.l_quantity.push(l.quantity);
            c.l_unit_price.push(l.unit_price);
            c.l_total.push(l.total);
            c.l_tax_rate.push(l.tax_rate);
            c.l_restock.push(l.restock);
        }
    }
}

/// Writes the accepted returns with their audit records, computed against `assumed`; answers
/// each document as the API shows it, with its index in the batch.
pub(super) async fn write_documents(
    conn: &mut PgConnection,
    batch: &[&PreparedReturn],
    accepted: &[Accepted],
    assumed: &Books,
    now: DateTime<Utc>,
) -> Result<Vec<(usize, ReturnDoc)>, sqlx::Error> {
    // As shown, but for the number the statement gives each.
    let mut shown: Vec<ReturnDoc> = accepted
        .iter()
        .map(|a| {
            let r = batch[a.index];
            let doc = NewDoc {
                id: r.id,
                kind: "return",
                register_id: r.register_id,
                cash_session_id: r.session_id,
                cashier_id: r.user_id,
                original_sale_id: r.sale.as_ref().map(|s| s.id),
                year: a.year,
                seq: 0,
                number: "",
                currency: &r.business.currency,
                prices_include_tax: a.prices_include_tax,
                net: a.sum(|t| t.1),
                tax: a.sum(|t| t.2),
                total: a.sum(|t| t.3),
                cash_rounding: Decimal::ZERO,
                refunds: &r.refunds,
                taxes: &a.taxes,
                reason_code: &r.reason_code,
                approval_ref: r.approval.as_ref().map(|u| u.approval_ref.as_str()),
                approved_by: r.approval.as_ref().map(|u| u.approver_id),
                location_id: r.location_id,
                request_hash: &r.hash,
                customer_id: r.customer_id,
                at: now,
            };
            store::as_shown(&doc, &a.lines, r.business.currency_scale)
        })
        .collect();
    let w = WriteColumns::new(batch, accepted, &shown, now);
    let answer = run_write(conn, &w, assumed, now).await?;
    WRITE.committed();
    let numbers = numbers(&answer)?;
    for (k, doc) in shown.iter_mut().enumerate() {
        doc.number = numbers.get(&(k as i64 + 1)).cloned().ok_or_else(|| {
            sqlx::Error::Protocol(format!("return {} was written without a number", doc.id))
        })?;
    }
    Ok(accepted.iter().map(|a| a.index).zip(shown).collect())
}

/// The running totals' parameters of the `WRITE` statement: what the batch adds per sale line
/// (`q_`) and per sale and tax rate (`t_`), and what each was computed against.
#[derive(Default)]
struct Totals {
    q_sale: Vec<Uuid>,
    q_line: Vec<i32>,
    q_sold: Vec<Decimal>,
    q_back: Vec<Decimal>,
    q_assumed: Vec<Decimal>,
    t_sale: Vec<Uuid>,
    t_rate: Vec<Decimal>,
    t_net: Vec<Decimal>,
    t_gross: Vec<Decimal>,
    t_assumed_net: Vec<Decimal>,
    t_assumed_gross: Vec<Decimal>,
}

impl Totals {
    fn new(w: &WriteColumns<'_>, assumed: &Books) -> Totals {
        let mut t = Totals::default();
        for (&(sale, line), &(sold, back)) in &w.returned {
            t.q_sale.push(sale);
            t.q_line.push(line);
            t.q_sold.push(sold);
            t.q_back.push(back);
            t.q_assumed.push(assumed.returned(sale, line));
        }
        for (&(sale, rate), &(net, gross)) in &w.taxed {
            let (before_net, before_gross) = assumed.refunded(sale, rate);
            t.t_sale.push(sale);
            t.t_rate.push(rate);
            t.t_net.push(net);
            t.t_gross.push(gross);
            t.t_assumed_net.push(before_net);
            t.t_assumed_gross.push(before_gross);
        }
        t
    }
}

/// Runs the `WRITE` statement with `w`'s parameters; its answer (JSON text).
async fn run_write(
    conn: &mut PgConnection,
    w: &WriteColumns<'_>,
    assumed: &Books,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let (c, stock, jobs, audit) = (&w.docs, &w.stock, &w.jobs, &w.audit);
    let t = Totals::new(w, assumed);
    let registers: Vec<Uuid> = w.registers.iter().copied().collect();
    sqlx::query_scalar(WRITE.sql())
        .bind(now)
        .bind(&registers)
        .bind(&c.id)
        .bind(&c.register_id)
        .bind(&c.session_id)
        .bind(&c.cashier_id)
        .bind(&c.sale_id)
        .bind(&c.year)
        .bind(&c.template)
        .bind(&c.digits)
        .bind(&c.currency)
        .bind(&c.pit)
        .bind(&c.net)
        .bind(&c.tax)
        .bind(&c.total)
        .bind(&c.reason_code)
        .bind(&c.approval_ref)
        .bind(&c.approved_by)
        .bind(&c.location_id)
        .bind(&c.request_hash)
        .bind(&c.r_from)
        .bind(&c.r_to)
        .bind(&c.t_from)
        .bind(&c.t_to)
        .bind(&c.r_method)
        .bind(&c.r_amount)
        .bind(&c.t_rate)
        .bind(&c.t_net)
        .bind(&c.t_tax)
        .bind(&c.t_gross)
        .bind(&c.l_return)
        .bind(&c.l_no)
        .bind(&c.l_sale_line)
        .bind(&c.l_product)
        .bind(&c.l_sku)
        .bind(&c.l_name)
        .bind(&c.l_quantity)
        .bind(&c.l_unit_price)
        .bind(&c.l_total)
        .bind(&c.l_tax_rate)
        .bind(&c.l_restock)
        .bind(&t.q_sale)
        .bind(&t.q_line)
        .bind(&t.q_sold)
        .bind(&t.q_back)
        .bind(&t.t_sale)
        .bind(&t.t_rate)
        .bind(&t.t_net)
        .bind(&t.t_gross)
        .bind(&c.key)
        .bind(&t.q_assumed)
        .bind(&t.t_assumed_net)
        .bind(&t.t_assumed_gross)
        .bind(&c.customer_id)
        .bind(&stock.id)
        .bind(&stock.product_id)
        .bind(&stock.location_id)
        .bind(&stock.delta)
        .bind(&stock.reason_code)
        .bind(&stock.document_id)
        .bind(&stock.line_no)
        .bind(&stock.user_id)
        .bind(&jobs.id)
        .bind(&jobs.kind)
        .bind(&jobs.payload)
        .bind(&jobs.unique_key)
        .bind(&jobs.max_attempts)
        .bind(&jobs.run_at)
        .bind(&audit.id)
        .bind(&audit.base)
        .bind(&audit.user_id)
        .bind(&audit.username)
        .bind(&audit.role)
        .bind(&audit.workstation_id)
        .bind(&audit.request_id)
        .fetch_one(conn)
        .await
}

/// The numbers in the `WRITE` statement's answer: document position (1-based) -> number.
fn numbers(answer: &str) -> Result<HashMap<i64, String>, sqlx::Error> {
    let bad = || sqlx::Error::Protocol(format!("the returns statement answered {answer}"));
    let value: Value = serde_json::from_str(answer).map_err(|_| bad())?;
    let mut numbers = HashMap::new();
    for row in value["numbers"].as_array().ok_or_else(bad)? {
        match (row[0].as_i64(), row[1].as_str()) {
            (Some(ord), Some(number)) => numbers.insert(ord, number.to_owned()),
            _ => return Err(bad()),
        };
    }
    Ok(numbers)
}

/// The audit record's `after` of a return or void: its [`audit_base`] with its number and
/// what it did to stock.
pub fn audit_after(
    doc: &ReturnDoc,
    approval: Option<&Used>,
    stock: &[impl serde::Serialize],
) -> Value {
    let mut after = audit_base(doc, approval);
    after["number"] = json!(doc.number);
    after["stock"] = json!(stock);
    after
}

/// A pushed return's audit record also says where it came from.
fn with_origin(mut base: Value, r: &PreparedReturn) -> Value {
    if let Some(offline) = &r.offline {
        base["offline"] = offline.clone();
    }
    base
}

/// What a return's or void's audit record says of it, but for its number and stock.
fn audit_base(doc: &ReturnDoc, approval: Option<&Used>) -> Value {
    let mut base = json!({
        "kind": doc.kind, "original_sale_id": doc.original_sale_id,
        "register_id": doc.register_id, "cash_session_id": doc.cash_session_id,
        "totals": doc.totals, "taxes": doc.taxes, "refunds": doc.refunds, "lines": doc.lines.len(),
        "reason_code": doc.reason_code,
        "approved_by": approval.map(|a| json!({"user_id": a.approver_id, "username": a.approver_username})),
    });
    // Only a return naming a customer says so (other returns' records read as they always did).
    if let Some(customer) = doc.customer_id {
        base["customer_id"] = json!(customer);
    }
    base
}
