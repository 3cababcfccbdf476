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

use super::batch::{Outcome, PreparedReturn, record_batch};
use crate::core::db::on_own_thread;
use crate::core::http::ApiError;
use crate::core::state::AppState;
use crate::shared::clock::Clock;

/// Writers that record batches side by side (while one waits for its commit, the next records
/// what arrived meanwhile), as many as the sales writer runs.
const WRITERS: usize = 2;
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
    let outcomes = record_batch(pool, &returns, now).await;
    metrics::histogram!("plugpos_return_batch_returns").record(returns.len() as f64);
    metrics::histogram!("plugpos_return_batch_seconds").record(started.elapsed().as_secs_f64());
    for (job, outcome) in jobs.into_iter().zip(outcomes) {
        // A request that gave up waiting (its client left) finds its return recorded on retry.
        let _ = job.reply.send(outcome);
    }
}
