//! Recording prepared sales: a batch of them in one audited transaction, with one multi-row
//! statement per table, so that concurrent sales share their round trips and their commit.
//!
//! In the transaction, in this order: one statement share-locks the registers' open cash sessions
//! (in register order), finds client-made ids that committed meanwhile, and advances each
//! register's receipt counter by the number of its sales that will be written; the keys of those
//! sales are claimed (in key order); then the sales, their stock movements (levels in product
//! order) and one audit record each are written. Concurrent batches thus take shared rows in one
//! order and never deadlock. Numbers are handed out in batch order, and a rollback gives every
//! number and key back, so numbering stays gap-free.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::prepare::{PreparedSale, no_open_session};
use super::store::Sale;
use crate::core::audit::{Actor, AuditError, AuditedTx};
use crate::core::http::ApiError;
use crate::core::http::idempotency::{self, NewKey, StoredKey, key_reused};
use crate::plugs::management::api::stock::{self, Take};

const SCOPE: &str = "sales";
/// How often a batch is tried again when a key it meant to claim was committed meanwhile.
const KEY_RACE_ATTEMPTS: usize = 3;

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

/// A sale with its receipt counter.
struct Numbered {
    /// Its place in the batch.
    index: usize,
    year: i32,
    seq: i64,
    sale: Sale,
}

/// What the batch does with one sale.
enum Plan {
    Done(Outcome),
    /// A retry of sale `index` of this batch.
    SameAs(usize),
    /// To be decided by what the database holds (its session, its client id).
    Candidate,
    Write {
        session_id: Uuid,
        year: i32,
        seq: i64,
    },
}

/// Records `sales` at `now` in one transaction and gives each one's outcome, in order. On a
/// database error nothing is recorded (the caller may try the sales one by one).
pub async fn record_batch(
    pool: &PgPool,
    sales: &[&PreparedSale],
    now: DateTime<Utc>,
) -> Result<Vec<Outcome>, AuditError> {
    // Requests look their key up before they are prepared, so a key is normally new here; only
    // when a claim falls short (a racing retry committed first) are the keys read in the batch.
    let mut read_keys = false;
    for _ in 0..KEY_RACE_ATTEMPTS {
        if let Some(outcomes) = attempt(pool, sales, now, read_keys).await? {
            return Ok(outcomes);
        }
        read_keys = true;
    }
    Err(AuditError::Database(sqlx::Error::Protocol(
        "idempotency keys kept being claimed by concurrent requests".to_owned(),
    )))
}

/// One try; `None` when a key could not be claimed (rolled back).
async fn attempt(
    pool: &PgPool,
    sales: &[&PreparedSale],
    now: DateTime<Utc>,
    read_keys: bool,
) -> Result<Option<Vec<Outcome>>, AuditError> {
    let mut tx = AuditedTx::begin(pool, Actor::system("operations.sales"), now).await?;
    let stored = if read_keys {
        let keys: Vec<&str> = sales.iter().map(|s| s.key.as_str()).collect();
        idempotency::find_all(&mut tx, SCOPE, &keys).await?
    } else {
        HashMap::new()
    };
    let years: Vec<i32> = sales
        .iter()
        .map(|s| now.with_timezone(&s.business.timezone).year())
        .collect();
    let mut plans = pre_plan(sales, &stored);
    let candidates: Vec<usize> = (0..sales.len())
        .filter(|&i| matches!(plans[i], Plan::Candidate))
        .collect();
    let opened = open_and_number(&mut tx, sales, &candidates, &years).await?;
    decide(&mut plans, sales, &years, opened);

    let writes: Vec<(usize, Uuid, i32, i64)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, plan)| match *plan {
            Plan::Write {
                session_id,
                year,
                seq,
            } => Some((i, session_id, year, seq)),
            _ => None,
        })
        .collect();
    if writes.is_empty() {
        drop(tx); // rolls back: nothing to write
        return Ok(Some(finish(plans, Vec::new(), sales)));
    }
    let keys: Vec<NewKey> = writes
        .iter()
        .map(|&(i, ..)| NewKey {
            key: &sales[i].key,
            request_hash: &sales[i].request_hash,
            resource_id: sales[i].id,
            user_id: sales[i].cashier_id,
        })
        .collect();
    if idempotency::claim_all(&mut tx, SCOPE, &keys, now).await? < keys.len() {
        drop(tx); // rolls back, numbers included; the next try reads the keys
        return Ok(None);
    }

    let recorded: Vec<Numbered> = writes
        .into_iter()
        .map(|(index, session_id, year, seq)| {
            let sale = sales[index];
            let number = sale.business.receipt_number(&sale.register_code, year, seq);
            Numbered {
                index,
                year,
                seq,
                sale: sale.to_sale(session_id, number, now),
            }
        })
        .collect();
    insert_sales(&mut tx, sales, &recorded, now).await?;

    let goods: Vec<Vec<(Uuid, Decimal)>> = recorded
        .iter()
        .map(|n| sales[n.index].tracked_goods())
        .collect();
    let takes: Vec<Take> = recorded
        .iter()
        .zip(&goods)
        .map(|(n, lines)| Take {
            document_id: n.sale.id,
            location_id: sales[n.index].location_id,
            user_id: n.sale.cashier_id,
            lines,
        })
        .collect();
    let stock_changes = stock::take_for_documents(&mut tx, &takes, "sale").await?;

    let records = recorded
        .iter()
        .zip(&stock_changes)
        .map(|(n, changes)| {
            let prepared = sales[n.index];
            (
                prepared.actor.clone(),
                prepared.audit_change(&n.sale, changes),
            )
        })
        .collect();
    tx.record_for(records).await?;
    tx.commit().await?;
    Ok(Some(finish(plans, recorded, sales)))
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

/// Decides the candidates by what [`open_and_number`] found, by the rule it counted them with: a
/// taken client id replays that sale; without an open session the sale is refused; the rest are
/// written, numbered in batch order from their counter's range. A retry of a refused sale of the
/// batch is refused alike.
fn decide(plans: &mut [Plan], sales: &[&PreparedSale], years: &[i32], mut opened: Opened) {
    for i in 0..plans.len() {
        let sale = sales[i];
        plans[i] = match plans[i] {
            Plan::Candidate if opened.taken.contains(&sale.id) => {
                Plan::Done(Ok(Written::Replay(sale.id)))
            }
            Plan::Candidate => match (
                opened.sessions.get(&sale.register_id),
                opened.next.get_mut(&(sale.register_id, years[i])),
            ) {
                (Some(&session_id), Some(next)) => {
                    let seq = *next;
                    *next += 1;
                    Plan::Write {
                        session_id,
                        year: years[i],
                        seq,
                    }
                }
                _ => Plan::Done(Err(no_open_session())),
            },
            Plan::SameAs(first) if matches!(plans[first], Plan::Done(Err(_))) => {
                Plan::Done(Err(no_open_session()))
            }
            _ => continue,
        };
    }
}

fn finish(plans: Vec<Plan>, recorded: Vec<Numbered>, sales: &[&PreparedSale]) -> Vec<Outcome> {
    let mut recorded: HashMap<usize, Sale> =
        recorded.into_iter().map(|n| (n.index, n.sale)).collect();
    plans
        .into_iter()
        .enumerate()
        .map(|(i, plan)| match plan {
            Plan::Done(outcome) => outcome,
            Plan::SameAs(first) => Ok(Written::Replay(sales[first].id)),
            Plan::Candidate | Plan::Write { .. } => match recorded.remove(&i) {
                Some(sale) => Ok(Written::Recorded(Box::new(sale))),
                None => Err(ApiError::Internal(anyhow::anyhow!(
                    "sale {} was planned but not recorded",
                    sales[i].id
                ))),
            },
        })
        .collect()
}

/// What [`open_and_number`] found.
struct Opened {
    /// Register -> its open session (share-locked until the transaction ends).
    sessions: HashMap<Uuid, Uuid>,
    /// Client-made ids that a committed sale has.
    taken: Vec<Uuid>,
    /// (register, year) -> the first number of the range just taken for the batch.
    next: HashMap<(Uuid, i32), i64>,
}

/// In one statement: share-locks the open cash sessions of the candidates' registers (in register
/// order) so that none closes under a sale being recorded in it, finds the client-made ids that
/// exist already, and advances each (register, year) receipt counter, in key order, by the number
/// of candidates that will be written there (open session, id not taken).
async fn open_and_number(
    conn: &mut PgConnection,
    sales: &[&PreparedSale],
    candidates: &[usize],
    years: &[i32],
) -> Result<Opened, sqlx::Error> {
    let mut registers: Vec<Uuid> = candidates.iter().map(|&i| sales[i].register_id).collect();
    registers.sort_unstable();
    registers.dedup();
    let client_ids: Vec<Uuid> = candidates
        .iter()
        .filter(|&&i| sales[i].client_id)
        .map(|&i| sales[i].id)
        .collect();
    let rows: Vec<(i16, Uuid, Uuid, i32, i64)> = sqlx::query_as(
        "WITH s AS (SELECT register_id, id FROM cash_sessions WHERE register_id = ANY($1) AND status = 'open' \
                    ORDER BY register_id FOR SHARE), \
         t AS (SELECT id FROM sales WHERE id = ANY($2)), \
         w AS (SELECT u.register_id, u.year, count(*) AS n FROM unnest($3::uuid[], $4::int[], $5::uuid[]) AS u(register_id, year, id) \
               JOIN s USING (register_id) WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id = u.id) \
               GROUP BY u.register_id, u.year), \
         c AS (INSERT INTO receipt_counters AS c (register_id, year, last_number) \
               SELECT register_id, year, n FROM w ORDER BY register_id, year \
               ON CONFLICT (register_id, year) DO UPDATE SET last_number = c.last_number + EXCLUDED.last_number \
               RETURNING c.register_id, c.year, c.last_number) \
         SELECT 1::int2, register_id, id, 0, 0::int8 FROM s \
         UNION ALL SELECT 2::int2, id, id, 0, 0::int8 FROM t \
         UNION ALL SELECT 3::int2, c.register_id, c.register_id, c.year, c.last_number - w.n + 1 \
                   FROM c JOIN w USING (register_id, year)",
    )
    .bind(&registers)
    .bind(&client_ids)
    .bind(candidates.iter().map(|&i| sales[i].register_id).collect::<Vec<_>>())
    .bind(candidates.iter().map(|&i| years[i]).collect::<Vec<_>>())
    .bind(candidates.iter().map(|&i| sales[i].id).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    let mut opened = Opened {
        sessions: HashMap::new(),
        taken: Vec::new(),
        next: HashMap::new(),
    };
    for (kind, a, b, year, first) in rows {
        match kind {
            1 => {
                opened.sessions.insert(a, b);
            }
            2 => opened.taken.push(a),
            _ => {
                opened.next.insert((a, year), first);
            }
        }
    }
    Ok(opened)
}

/// Inserts the sales, their lines, payments and tax buckets in one statement (foreign keys are
/// checked at its end, when the sale rows exist).
async fn insert_sales(
    conn: &mut PgConnection,
    sales: &[&PreparedSale],
    recorded: &[Numbered],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut s = SaleColumns::default();
    for n in recorded {
        s.push(sales[n.index], n);
    }
    sqlx::query(
        "WITH s AS (INSERT INTO sales (id, register_id, cash_session_id, cashier_id, receipt_year, receipt_seq, receipt_number, \
             status, currency, prices_include_tax, net, tax, total, cash_rounding, change_due, created_at) \
           SELECT s.id, s.register_id, s.session_id, s.cashier_id, s.year, s.seq, s.number, 'completed', s.currency, s.pit, \
                  s.net, s.tax, s.total, s.rounding, s.change, $15 \
           FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::int[], $6::bigint[], $7::text[], $8::text[], \
                       $9::bool[], $10::numeric[], $11::numeric[], $12::numeric[], $13::numeric[], $14::numeric[]) \
             AS s(id, register_id, session_id, cashier_id, year, seq, number, currency, pit, net, tax, total, rounding, change)), \
         l AS (INSERT INTO sale_lines (sale_id, line_no, product_id, sku, name, quantity, catalog_price, unit_price, discount, total, tax_class_id, tax_rate) \
           SELECT * FROM unnest($16::uuid[], $17::int[], $18::uuid[], $19::text[], $20::text[], $21::numeric[], $22::numeric[], \
                                $23::numeric[], $24::numeric[], $25::numeric[], $26::uuid[], $27::numeric[])), \
         p AS (INSERT INTO sale_payments (sale_id, line_no, method, amount) \
           SELECT * FROM unnest($28::uuid[], $29::int[], $30::text[], $31::numeric[])) \
         INSERT INTO sale_taxes (sale_id, rate, net, tax, gross) \
           SELECT * FROM unnest($32::uuid[], $33::numeric[], $34::numeric[], $35::numeric[], $36::numeric[])",
    )
    .bind(&s.id)
    .bind(&s.register_id)
    .bind(&s.session_id)
    .bind(&s.cashier_id)
    .bind(&s.year)
    .bind(&s.seq)
    .bind(&s.number)
    .bind(&s.currency)
    .bind(&s.prices_include_tax)
    .bind(&s.net)
    .bind(&s.tax)
    .bind(&s.total)
    .bind(&s.cash_rounding)
    .bind(&s.change_due)
    .bind(now)
    .bind(&s.l_sale)
    .bind(&s.l_no)
    .bind(&s.l_product)
    .bind(&s.l_sku)
    .bind(&s.l_name)
    .bind(&s.l_quantity)
    .bind(&s.l_catalog_price)
    .bind(&s.l_unit_price)
    .bind(&s.l_discount)
    .bind(&s.l_total)
    .bind(&s.l_tax_class)
    .bind(&s.l_tax_rate)
    .bind(&s.p_sale)
    .bind(&s.p_no)
    .bind(&s.p_method)
    .bind(&s.p_amount)
    .bind(&s.t_sale)
    .bind(&s.t_rate)
    .bind(&s.t_net)
    .bind(&s.t_tax)
    .bind(&s.t_gross)
    .execute(conn)
    .await?;
    Ok(())
}

/// The rows of a batch of sales as column arrays.
#[derive(Default)]
struct SaleColumns {
    id: Vec<Uuid>,
    register_id: Vec<Uuid>,
    session_id: Vec<Uuid>,
    cashier_id: Vec<Uuid>,
    year: Vec<i32>,
    seq: Vec<i64>,
    number: Vec<String>,
    currency: Vec<String>,
    prices_include_tax: Vec<bool>,
    net: Vec<Decimal>,
    tax: Vec<Decimal>,
    total: Vec<Decimal>,
    cash_rounding: Vec<Decimal>,
    change_due: Vec<Decimal>,
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
    p_sale: Vec<Uuid>,
    p_no: Vec<i32>,
    p_method: Vec<String>,
    p_amount: Vec<Decimal>,
    t_sale: Vec<Uuid>,
    t_rate: Vec<Decimal>,
    t_net: Vec<Decimal>,
    t_tax: Vec<Decimal>,
    t_gross: Vec<Decimal>,
}

impl SaleColumns {
    fn push(&mut self, prepared: &PreparedSale, numbered: &Numbered) {
        let (sale, priced) = (&numbered.sale, &prepared.priced);
        self.id.push(sale.id);
        self.register_id.push(sale.register_id);
        self.session_id.push(sale.cash_session_id);
        self.cashier_id.push(sale.cashier_id);
        self.year.push(numbered.year);
        self.seq.push(numbered.seq);
        self.number.push(sale.receipt_number.clone());
        self.currency.push(sale.currency.clone());
        self.prices_include_tax.push(sale.prices_include_tax);
        self.net.push(priced.net);
        self.tax.push(priced.tax);
        self.total.push(priced.total);
        self.cash_rounding.push(priced.cash_rounding);
        self.change_due.push(priced.change_due);
        for ((line_no, (product, input)), total) in
            (1..).zip(&prepared.lines).zip(&priced.line_totals)
        {
            self.l_sale.push(sale.id);
            self.l_no.push(line_no);
            self.l_product.push(product.id);
            self.l_sku.push(product.sku.clone());
            self.l_name.push(product.name.clone());
            self.l_quantity.push(input.quantity);
            self.l_catalog_price.push(product.price);
            self.l_unit_price.push(input.unit_price);
            self.l_discount.push(input.discount);
            self.l_total.push(*total);
            self.l_tax_class.push(product.tax_class_id);
            self.l_tax_rate.push(input.tax_rate);
        }
        for (line_no, (method, amount)) in (1..).zip(&prepared.payments) {
            self.p_sale.push(sale.id);
            self.p_no.push(line_no);
            self.p_method.push(method.clone());
            self.p_amount.push(*amount);
        }
        for t in &priced.taxes {
            self.t_sale.push(sale.id);
            self.t_rate.push(t.rate);
            self.t_net.push(t.net);
            self.t_tax.push(t.tax);
            self.t_gross.push(t.gross);
        }
    }
}
