//! The workers: claim due jobs (`FOR UPDATE SKIP LOCKED`), run their handlers, heartbeat, finish
//! them, rescue the jobs of dead workers, and publish every change on the `jobs` topic.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::core::jobs::{CHANNEL, COLUMNS, Job, JobKind, backoff};
use crate::core::state::AppState;

/// What a handler returns: a JSON result (stored on the job) or the reason it failed.
pub type HandlerFuture = Pin<Box<dyn Future<Output = anyhow::Result<Value>> + Send>>;

/// Runs one attempt of a job. Delivery is at-least-once: a handler must be idempotent.
pub type HandlerFn = Arc<dyn Fn(JobContext) -> HandlerFuture + Send + Sync>;

/// A job kind and the code that runs it.
#[derive(Clone)]
pub struct Handler {
    pub kind: JobKind,
    pub run: HandlerFn,
}

impl Handler {
    /// A handler from an async function.
    pub fn new<F, Fut>(kind: JobKind, run: F) -> Handler
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<Value>> + Send + 'static,
    {
        Handler {
            kind,
            run: Arc::new(move |ctx| Box::pin(run(ctx))),
        }
    }
}

/// The handlers a runner knows, by kind.
#[derive(Clone, Default)]
pub struct Handlers(Arc<HashMap<&'static str, Handler>>);

impl Handlers {
    pub fn new(list: impl IntoIterator<Item = Handler>) -> Handlers {
        Handlers(Arc::new(
            list.into_iter().map(|h| (h.kind.name, h)).collect(),
        ))
    }

    /// The kind called `name`, if this runner knows it.
    pub fn kind(&self, name: &str) -> Option<JobKind> {
        self.0.get(name).map(|h| h.kind)
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.0.keys().copied().collect()
    }
}

/// What a running handler is given.
#[derive(Clone)]
pub struct JobContext {
    pub job: Job,
    pub state: AppState,
}

impl JobContext {
    /// Records progress on the job and publishes it on the `jobs` topic.
    pub async fn progress(&self, progress: Value) {
        let saved = sqlx::query(
            "UPDATE jobs SET progress = $2, updated_at = $3 WHERE id = $1 AND status = 'running'",
        )
        .bind(self.job.id)
        .bind(&progress)
        .bind(self.state.clock().now())
        .execute(self.state.pool())
        .await;
        if let Err(e) = saved {
            tracing::debug!(job_id = %self.job.id, error = %e, "cannot record job progress");
        }
        self.state.live().publish(
            "jobs",
            "job.progress",
            json!({"id": self.job.id, "kind": self.job.kind, "status": "running", "progress": progress}),
        );
    }
}

/// Claims and runs jobs for one application.
#[derive(Clone)]
pub struct Runner {
    state: AppState,
    handlers: Handlers,
}

impl Runner {
    pub fn new(state: AppState, handlers: Handlers) -> Runner {
        Runner { state, handlers }
    }

    /// Runs `jobs.workers` workers until the task is dropped, woken by `NOTIFY` at every commit
    /// that enqueued a job and at least every `jobs.poll_secs`.
    pub async fn run(self) {
        let config = self.state.config().jobs.clone();
        let wake = Arc::new(Notify::new());
        let poll = Duration::from_secs(config.poll_secs);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(listen(self.state.clone(), wake.clone()));
        for _ in 0..config.workers.max(1) {
            let runner = self.clone();
            let wake = wake.clone();
            tasks.spawn(async move {
                loop {
                    let notified = wake.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    match runner.work_one().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = format!("{e:#}"), "job runner"),
                    }
                    let _ = tokio::time::timeout(poll, notified).await;
                }
            });
        }
        let runner = self.clone();
        tasks.spawn(async move {
            loop {
                if let Err(e) = runner.rescue().await {
                    tracing::warn!(error = format!("{e:#}"), "cannot rescue stuck jobs");
                }
                tokio::time::sleep(poll).await;
            }
        });
        while tasks.join_next().await.is_some() {}
    }

    /// Claims one due job and runs it to the end; `None` when nothing is due.
    pub async fn work_one(&self) -> anyhow::Result<Option<Job>> {
        let Some(job) = self.claim().await? else {
            return Ok(None);
        };
        let Some(handler) = self.handlers.0.get(job.kind.as_str()).cloned() else {
            // Only known kinds are claimed.
            anyhow::bail!("no handler for job kind {}", job.kind);
        };
        tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, "job started");
        self.publish("job.started", &job);
        let heartbeat = tokio::spawn(heartbeat(self.state.clone(), job.id, job.attempts));
        let ctx = JobContext {
            job: job.clone(),
            state: self.state.clone(),
        };
        // Spawned, so a panicking handler fails its job instead of the worker.
        let outcome = match tokio::spawn((handler.run)(ctx)).await {
            Ok(outcome) => outcome,
            Err(e) => Err(anyhow::anyhow!("the job handler panicked: {e}")),
        };
        heartbeat.abort();
        let finished = self.finish(&job, outcome).await?;
        Ok(Some(finished.unwrap_or(job)))
    }

    async fn claim(&self) -> Result<Option<Job>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = $1, heartbeat_at = $1, \
                 finished_at = NULL, progress = NULL, updated_at = $1 \
             WHERE id = (SELECT id FROM jobs WHERE status IN ('queued', 'failed') AND run_at <= $1 \
                             AND kind = ANY($2) ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING {COLUMNS}"
        )))
        .bind(self.state.clock().now())
        .bind(self.handlers.kinds())
        .fetch_optional(self.state.pool())
        .await
    }

    /// Records the outcome of the attempt the worker claimed; `None` when the job was rescued (or
    /// replaced) meanwhile, so the outcome of a stale attempt never overwrites a newer one.
    async fn finish(
        &self,
        job: &Job,
        outcome: anyhow::Result<Value>,
    ) -> anyhow::Result<Option<Job>> {
        let now = self.state.clock().now();
        let finished: Option<Job> = match &outcome {
            Ok(result) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE jobs SET status = 'succeeded', result = $3, finished_at = $4, heartbeat_at = NULL, \
                     last_error = NULL, updated_at = $4 \
                 WHERE id = $1 AND status = 'running' AND attempts = $2 RETURNING {COLUMNS}"
            )))
            .bind(job.id)
            .bind(job.attempts)
            .bind(result)
            .bind(now)
            .fetch_optional(self.state.pool())
            .await?,
            Err(error) => {
                let config = &self.state.config().jobs;
                let retry_at =
                    now + backoff(job.attempts, config.backoff_base_secs, config.backoff_max_secs);
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "UPDATE jobs SET \
                         status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END, \
                         finished_at = CASE WHEN attempts >= max_attempts THEN $4 END, \
                         run_at = CASE WHEN attempts >= max_attempts THEN run_at ELSE $5 END, \
                         heartbeat_at = NULL, last_error = $3, updated_at = $4 \
                     WHERE id = $1 AND status = 'running' AND attempts = $2 RETURNING {COLUMNS}"
                )))
                .bind(job.id)
                .bind(job.attempts)
                .bind(format!("{error:#}"))
                .bind(now)
                .bind(retry_at)
                .fetch_optional(self.state.pool())
                .await?
            }
        };
        match &finished {
            Some(done) => {
                match done.status.as_str() {
                    "succeeded" => {
                        tracing::info!(job_id = %done.id, kind = %done.kind, "job succeeded")
                    }
                    "dead" => {
                        tracing::error!(job_id = %done.id, kind = %done.kind, error = ?done.last_error,
                        "job failed for the last time (dead)")
                    }
                    _ => {
                        tracing::warn!(job_id = %done.id, kind = %done.kind, error = ?done.last_error,
                        retry_at = %done.run_at, "job failed; it will be retried")
                    }
                }
                self.publish(&format!("job.{}", done.status), done);
            }
            None => tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempts,
                "the job was rescued or replaced while it ran; this attempt's outcome is dropped"),
        }
        Ok(finished)
    }

    /// Fails (or dead-letters) running jobs whose worker stopped heartbeating: the process was
    /// killed, the machine lost power. They run again after the usual backoff.
    pub async fn rescue(&self) -> anyhow::Result<Vec<Job>> {
        let now = self.state.clock().now();
        let config = &self.state.config().jobs;
        let stale_before = now
            - chrono::Duration::seconds(
                i64::try_from(config.rescue_after_secs).unwrap_or(i64::MAX / 1000),
            );
        let rescued: Vec<Job> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET \
                 status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'failed' END, \
                 finished_at = CASE WHEN attempts >= max_attempts THEN $1 END, \
                 run_at = $1, heartbeat_at = NULL, updated_at = $1, \
                 last_error = 'the worker stopped during attempt ' || attempts || \
                              ' (no heartbeat since ' || to_char(heartbeat_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || ')' \
             WHERE status = 'running' AND heartbeat_at < $2 RETURNING {COLUMNS}"
        )))
        .bind(now)
        .bind(stale_before)
        .fetch_all(self.state.pool())
        .await
        .context("cannot rescue stuck jobs")?;
        for job in &rescued {
            tracing::warn!(job_id = %job.id, kind = %job.kind, status = %job.status, "rescued a job whose worker stopped");
            self.publish(&format!("job.{}", job.status), job);
        }
        Ok(rescued)
    }

    fn publish(&self, event: &str, job: &Job) {
        self.state.live().publish(
            "jobs",
            event,
            json!({
                "id": job.id, "kind": job.kind, "status": job.status, "attempts": job.attempts,
                "max_attempts": job.max_attempts, "last_error": job.last_error, "result": job.result,
            }),
        );
    }
}

async fn heartbeat(state: AppState, id: Uuid, attempt: i32) {
    let every = Duration::from_secs(state.config().jobs.heartbeat_secs.max(1));
    loop {
        tokio::time::sleep(every).await;
        let beat = sqlx::query(
            "UPDATE jobs SET heartbeat_at = $3 WHERE id = $1 AND attempts = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(attempt)
        .bind(state.clock().now())
        .execute(state.pool())
        .await;
        if let Err(e) = beat {
            tracing::debug!(job_id = %id, error = %e, "job heartbeat failed");
        }
    }
}

/// Wakes the workers whenever a transaction that enqueued a job commits.
async fn listen(state: AppState, wake: Arc<Notify>) {
    loop {
        let interrupted: Result<std::convert::Infallible, sqlx::Error> = async {
            let mut listener = PgListener::connect_with(state.pool()).await?;
            listener.listen(CHANNEL).await?;
            loop {
                listener.recv().await?;
                wake.notify_waiters();
            }
        }
        .await;
        let Err(e) = interrupted;
        tracing::debug!(error = %e, "job notifications interrupted; polling meanwhile");
        tokio::time::sleep(Duration::from_secs(state.config().jobs.poll_secs)).await;
    }
}
