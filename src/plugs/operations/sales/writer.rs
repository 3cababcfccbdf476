//! The sales writer: a few tasks per server, on a thread of their own, that record prepared sales in batches.
//!
//! Requests validate and price their sale themselves, concurrently, then queue it here and wait.
//! A free writer takes whatever is queued (at most [`MAX_BATCH`]) and records it in one
//! statement ([`record_batch`]); the sales that arrive meanwhile form the next batch. So under load many
//! sales share one round trip and one commit, and a lone sale is written at once (no
//! waiting for company). When a batch fails, its sales are recorded one by one, so one bad sale
//! fails alone. Every request gets its answer only after its sale's transaction committed.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::SubsecRound;
use futures_util::FutureExt;
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::prepare::PreparedSale;
use super::record::{Outcome, Written, record_batch};
use crate::core::audit::AuditError;
use crate::core::db::on_own_thread;
use crate::core::db::violated_constraint;
use crate::core::http::ApiError;
use crate::core::live::Hub;
use crate::core::state::AppState;
use crate::shared::clock::Clock;

/// Writers that record batches side by side: while one waits for its commit to reach the disk,
/// the next records the sales that arrived meanwhile. They all run one statement, which locks what
/// they share (sessions, receipt counters, stock levels) in one order, so they wait for each other
/// but do not deadlock. On their own thread, two did best on two cores in the fourth look
/// (docs/PERFORMANCE.md): more writers wait on each other's stock-level locks and commit smaller
/// batches (PostgreSQL CPU per sale, medians: 1.4 ms with one, 1.8 with two, 2.1 with three); one writer
/// makes a sale that arrives during a commit wait for it, then for its own. In the fifth look one,
/// two and three were within the noise at 8 and 32 clients; two stay.
const WRITERS: usize = 2;
/// The most sales one statement records.
pub const MAX_BATCH: usize = 64;
/// Sales queued beyond this make requests wait to queue (back-pressure, bounded memory).
const QUEUE: usize = 1024;

struct Job {
    sale: Box<PreparedSale>,
    reply: oneshot::Sender<Outcome>,
}

/// The handle requests queue their sales on.
pub struct SaleWriter {
    queue: mpsc::Sender<Job>,
}

impl SaleWriter {
    /// The writer of this server, started on first use; it stops when the state is dropped.
    pub fn of(state: &AppState) -> Arc<SaleWriter> {
        state.service(|state| {
            let (queue, jobs) = mpsc::channel(QUEUE);
            start(
                Arc::new(Mutex::new(jobs)),
                state.pool(),
                state.live().clone(),
                state.clock().clone(),
            );
            SaleWriter { queue }
        })
    }

    /// Records `sale` (or finds what it replays); returns once that is committed.
    pub async fn write(&self, sale: Box<PreparedSale>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let stopped = || ApiError::Internal(anyhow::anyhow!("the sales writer has stopped"));
        self.queue
            .send(Job { sale, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Starts the writers on a thread of their own ([`on_own_thread`]).
fn start(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, pool: &PgPool, live: Arc<Hub>, clock: Clock) {
    on_own_thread("sales-writer", pool, WRITERS, move |pool| {
        run(jobs.clone(), pool, live.clone(), clock.clone())
    });
}

async fn run(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, pool: PgPool, live: Arc<Hub>, clock: Clock) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // One writer at a time waits for work; the others are writing meanwhile.
        if jobs.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let taken = std::mem::take(&mut batch);
        // A panic must not stop the writer: that batch's requests get an error (their reply
        // senders are dropped) and the next batch is written as usual.
        let written = AssertUnwindSafe(write(&pool, &live, &clock, taken)).catch_unwind();
        if written.await.is_err() {
            tracing::error!("the sales writer panicked while recording a batch; it goes on");
        }
    }
}

async fn write(pool: &PgPool, live: &Hub, clock: &Clock, jobs: Vec<Job>) {
    let started = std::time::Instant::now();
    let now = clock.now().trunc_subsecs(6);
    let sales: Vec<&PreparedSale> = jobs.iter().map(|j| &*j.sale).collect();
    let outcomes = match record_batch(pool, &sales, now).await {
        Ok(outcomes) => outcomes,
        Err(e) if sales.len() > 1 => {
            tracing::warn!(error = %e, sales = sales.len(), "a batch of sales failed; recording them one by one");
            let mut outcomes = Vec::with_capacity(sales.len());
            for sale in &sales {
                outcomes.push(match record_batch(pool, &[sale], now).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| Err(lost(sale))),
                    Err(e) => alone_failed(sale, e),
                });
            }
            outcomes
        }
        Err(e) => vec![alone_failed(sales[0], e)],
    };
    metrics::histogram!("plugpos_sale_batch_sales").record(sales.len() as f64);
    metrics::histogram!("plugpos_sale_batch_seconds").record(started.elapsed().as_secs_f64());
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        if let Ok(Written::Recorded(sale)) = &outcome {
            metrics::counter!("plugpos_sales_total").increment(1);
            live.publish(
                "sales",
                "sale.completed",
                json!({
                    "id": sale.id, "receipt_number": sale.receipt_number, "register_id": sale.register_id,
                    "cash_session_id": sale.cash_session_id, "cashier_id": sale.cashier_id,
                    "currency": sale.currency, "totals": sale.totals, "created_at": sale.created_at,
                }),
            );
        }
        // A request that gave up waiting (its client left) finds its sale recorded on retry.
        let _ = job.reply.send(outcome);
    }
}

fn lost(sale: &PreparedSale) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("no outcome for sale {}", sale.id))
}

/// The answer for a sale whose own transaction failed: a client id that another request recorded
/// meanwhile is a replay of that sale; anything else is the error.
fn alone_failed(sale: &PreparedSale, e: AuditError) -> Outcome {
    if let AuditError::Database(db) = &e
        && violated_constraint(db) == Some("sales_pkey")
    {
        return Ok(Written::Replay(sale.id));
    }
    if let AuditError::Database(db) = &e
        && violated_constraint(db) == Some("sale_lines_stock_not_negative")
    {
        let product = db
            .as_database_error()
            .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
            .and_then(|d| d.detail())
            .unwrap_or("a product")
            .to_owned();
        return Err(ApiError::Conflict {
            code: "stock.insufficient",
            detail: format!(
                "Not enough stock of product {product} at the register's location (the switch sales.allow_negative_stock is off); the sale was not recorded."
            ),
        });
    }
    tracing::warn!(error = %e, sale = %sale.id, request_id = sale.actor.request_id.as_deref().unwrap_or(""), "a sale could not be recorded");
    Err(e.into())
}
