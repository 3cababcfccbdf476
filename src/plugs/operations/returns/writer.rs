//! The returns writer: tasks that record checked returns in batches ([`record_batch`]), like the
//! sales writer records sales. Requests check their return themselves, concurrently, then queue
//! it here and wait; a free writer takes whatever is queued (at most [`MAX_BATCH`]) and records
//! it in one transaction, and the returns that arrive meanwhile form the next batch. A lone
//! return is written at once. When a batch fails, its returns are recorded one by one, so one
//! bad return fails alone. Every request gets its answer only after its return committed.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::SubsecRound;
use futures_util::FutureExt;
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::batch::{Outcome, PreparedReturn, Recorded, no_open_session, record_batch};
use super::store;
use crate::core::audit::AuditError;
use crate::core::db::{on_own_thread, violated_constraint};
use crate::core::http::ApiError;
use crate::core::state::AppState;
use crate::shared::clock::Clock;

/// Writers that record batches side by side (while one waits for its commit, the next records
/// what arrived meanwhile), as many as the sales writer runs.
const WRITERS: usize = 1;
/// The most returns one transaction records.
const MAX_BATCH: usize = 64;
/// Returns queued beyond this make requests wait to queue (back-pressure, bounded memory).
const QUEUE: usize = 1024;

struct Job {
    prepared: Box<PreparedReturn>,
    reply: oneshot::Sender<Outcome>,
}

/// The handle requests queue their returns on.
pub struct ReturnWriter {
    queue: mpsc::Sender<Job>,
}

impl ReturnWriter {
    /// The writer of this server, started on first use; it stops when the state is dropped.
    pub fn of(state: &AppState) -> Arc<ReturnWriter> {
        state.service(|state| {
            let (queue, jobs) = mpsc::channel(QUEUE);
            let jobs = Arc::new(Mutex::new(jobs));
            let clock = state.clock().clone();
            on_own_thread("returns-writer", state.pool(), WRITERS, move |pool| {
                run(jobs.clone(), pool, clock.clone())
            });
            ReturnWriter { queue }
        })
    }

    /// Records `prepared` (or finds what it replays); returns once that is committed.
    pub async fn write(&self, prepared: Box<PreparedReturn>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let stopped = || ApiError::Internal(anyhow::anyhow!("the returns writer has stopped"));
        self.queue
            .send(Job { prepared, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(jobs: Arc<Mutex<mpsc::Receiver<Job>>>, pool: PgPool, clock: Clock) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // One writer at a time waits for work; the others are writing meanwhile.
        if jobs.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let taken = std::mem::take(&mut batch);
        // A panic must not stop the writer: that batch's requests get an error (their reply
        // senders are dropped) and the next batch is written as usual.
        let written = AssertUnwindSafe(write(&pool, &clock, taken)).catch_unwind();
        if written.await.is_err() {
            tracing::error!("the returns writer panicked while recording a batch; it goes on");
        }
    }
}

async fn write(pool: &PgPool, clock: &Clock, jobs: Vec<Job>) {
    let started = std::time::Instant::now();
    let now = clock.now().trunc_subsecs(6);
    let returns: Vec<&PreparedReturn> = jobs.iter().map(|j| &*j.prepared).collect();
    let outcomes = match record_batch(pool, &returns, now).await {
        Ok(outcomes) => outcomes,
        Err(e) if returns.len() > 1 => {
            tracing::warn!(error = %e, returns = returns.len(), "a batch of returns failed; recording them one by one");
            let mut outcomes = Vec::with_capacity(returns.len());
            for r in &returns {
                outcomes.push(match record_batch(pool, &[r], now).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| {
                        Err(ApiError::Internal(anyhow::anyhow!(
                            "no outcome for return {}",
                            r.id
                        )))
                    }),
                    Err(e) => alone_failed(pool, r, e).await,
                });
            }
            outcomes
        }
        Err(e) => vec![alone_failed(pool, returns[0], e).await],
    };
    metrics::histogram!("plugpos_return_batch_returns").record(returns.len() as f64);
    metrics::histogram!("plugpos_return_batch_seconds").record(started.elapsed().as_secs_f64());
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        // A request that gave up waiting (its client left) finds its return recorded on retry.
        let _ = job.reply.send(outcome);
    }
}

/// The answer for a return whose own transaction failed: a client-made id that another request
/// recorded meanwhile is that request's return (a replay if it was this same request), more
/// than is left to give back is 409; anything else is the error (a closed day: 409 `period.closed`).
async fn alone_failed(pool: &PgPool, r: &PreparedReturn, e: AuditError) -> Outcome {
    let AuditError::Database(db) = e else {
        return Err(e.into());
    };
    match violated_constraint(&db) {
        Some("returns_pkey") => {
            let mut conn = pool.acquire().await?;
            match store::same_request(&mut conn, r.id, r.user_id, &r.hash).await? {
                Some(true) => Ok(Recorded::Replay(r.id)),
                _ => Err(id_conflict()),
            }
        }
        Some("return_session_closed") => Err(no_open_session()),
        // The writer checks the books it priced against, so only a void racing it gets here.
        Some("returned_not_above_sold") => Err(ApiError::Conflict {
            code: "return.exceeds_returnable",
            detail: "A line cannot give back that much: not more than was sold less what earlier returns gave back (see the sale's `returnable`).".to_owned(),
        }),
        _ => {
            tracing::warn!(error = %db, return_id = %r.id, request_id = r.actor.request_id.as_deref().unwrap_or(""), "a return could not be recorded");
            Err(db.into())
        }
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
