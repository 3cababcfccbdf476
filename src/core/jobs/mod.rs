//! The job queue: PostgreSQL-backed, in the business database.
//!
//! - A job is enqueued inside the caller's transaction ([`enqueue`]): it exists only if that
//!   transaction commits, and the runner is woken by a `NOTIFY` that PostgreSQL delivers only at
//!   commit.
//! - Workers claim due jobs with `FOR UPDATE SKIP LOCKED` ([`runner`]), heartbeat while they run,
//!   and finish them as `succeeded`, `failed` (another attempt follows after an exponential
//!   backoff) or `dead` (no attempt left; `POST /api/v1/jobs/{id}/retry` queues it again).
//! - A job whose worker died (its heartbeat is older than `jobs.rescue_after_secs`) is rescued:
//!   it counts as a failed attempt and runs again. Delivery is therefore at-least-once, and every
//!   handler is idempotent.
//! - A `unique_key` can be queued, running or waiting to retry only once (a partial unique index).
//! - Finished jobs are pruned after `jobs.keep_days` by the `maintenance.prune` job.

pub mod http;
pub mod runner;
pub mod schedule;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::live::Topic;
use crate::shared::ids::new_id;

/// Read jobs and schedules, and follow the `jobs` topic.
pub const READ: &str = "administration.jobs.read";
/// Retry dead jobs.
pub const MANAGE: &str = "administration.jobs.manage";

/// The topics core publishes.
pub const TOPICS: &[Topic] = &[Topic {
    name: "jobs",
    permission: READ,
    description: "Job status and progress: job.started, job.progress, job.succeeded, job.failed, job.dead",
}];

/// The channel the runner listens on; payload-less, delivered at commit.
pub const CHANNEL: &str = "plugpos_jobs";

/// The statuses a job can have.
pub const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "failed", "dead"];

/// A kind of job: its name and how often it may be attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobKind {
    pub name: &'static str,
    /// Attempts before the job is dead-lettered (at least 1).
    pub max_attempts: i32,
    pub description: &'static str,
    /// May a person queue a dead one again (`POST /jobs/{id}/retry`)? Not a restore: it runs
    /// only when a super admin asks with the business's name, so a new restore is a new request.
    pub retryable: bool,
}

/// One row of the queue, as the API serves it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed` (will retry at `run_at`) or `dead`.
    pub status: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub unique_key: Option<String>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// When the job is (or was) due.
    pub run_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// What the handler last reported while running.
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
    /// What the handler returned.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns of [`Job`], for `SELECT` and `RETURNING`.
pub const COLUMNS: &str = "id, kind, status, payload, unique_key, attempts, max_attempts, run_at, \
     started_at, finished_at, last_error, progress, result, created_at, updated_at";

/// What [`enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job.
    New(Uuid),
    /// A job with the same unique key is already queued, running or waiting to retry.
    Existing(Uuid),
}

impl Enqueued {
    pub fn id(self) -> Uuid {
        match self {
            Enqueued::New(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// The part of a caller's statement that queues jobs like [`enqueue`], several at once: its
/// parameters are the columns of [`JobColumns`]; a job whose unique key a pending job holds is
/// left out (that job does the work). Defines `jobs_queued(id)`, the jobs queued now; the
/// caller's final query wakes the runners with [`WAKE_IF_QUEUED`].
pub const ENQUEUE_PART: crate::core::audit::AuditedPart = crate::core::audit::AuditedPart::new(
    "jobs_queued AS (INSERT INTO jobs (id, kind, payload, unique_key, max_attempts, run_at, created_at, updated_at) \
       SELECT id, kind, payload::jsonb, unique_key, max_attempts, run_at, run_at, run_at \
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::timestamptz[]) \
         AS j(id, kind, payload, unique_key, max_attempts, run_at) ORDER BY unique_key \
       ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('queued', 'running', 'failed') \
       DO NOTHING RETURNING id)",
    6,
    &["jobs_queued"],
);

/// An expression for the final query of a statement with [`ENQUEUE_PART`]: notifies
/// [`CHANNEL`] (at commit) when it queued a job.
pub const WAKE_IF_QUEUED: &str = "(SELECT count(*) FROM (SELECT pg_notify('plugpos_jobs', '') FROM (SELECT 1 FROM jobs_queued LIMIT 1) q) w)";

/// The jobs a statement with [`ENQUEUE_PART`] queues, as its parameters.
#[derive(Debug, Default)]
pub struct JobColumns {
    pub id: Vec<Uuid>,
    pub kind: Vec<&'static str>,
    /// JSON text.
    pub payload: Vec<String>,
    pub unique_key: Vec<Option<String>>,
    pub max_attempts: Vec<i32>,
    pub run_at: Vec<DateTime<Utc>>,
}

impl JobColumns {
    /// Adds a job of `kind` (a unique key already among them is left out).
    pub fn push(
        &mut self,
        kind: &JobKind,
        payload: &Value,
        unique_key: Option<String>,
        run_at: DateTime<Utc>,
    ) {
        if unique_key.is_some() && self.unique_key.contains(&unique_key) {
            return;
        }
        self.id.push(new_id());
        self.kind.push(kind.name);
        self.payload.push(payload.to_string());
        self.unique_key.push(unique_key);
        self.max_attempts.push(kind.max_attempts.max(1));
        self.run_at.push(run_at);
    }
}

/// Queues a job of `kind`, due at `run_at`, inside the caller's transaction (`conn` is usually a
/// transaction): it exists, and the runner hears of it, only if that transaction commits.
pub async fn enqueue(
    conn: &mut PgConnection,
    kind: &JobKind,
    payload: Value,
    unique_key: Option<&str>,
    run_at: DateTime<Utc>,
) -> Result<Enqueued, sqlx::Error> {
    // The pending job holding the key may finish between the insert and the look-up: try again.
    for _ in 0..3 {
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO jobs (id, kind, payload, unique_key, max_attempts, run_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $6) \
             ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('queued', 'running', 'failed') \
             DO NOTHING RETURNING id",
        )
        .bind(new_id())
        .bind(kind.name)
        .bind(&payload)
        .bind(unique_key)
        .bind(kind.max_attempts.max(1))
        .bind(run_at)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = inserted {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(&mut *conn)
                .await?;
            return Ok(Enqueued::New(id));
        }
        let existing: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE unique_key = $1 AND status IN ('queued', 'running', 'failed')",
        )
        .bind(unique_key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = existing {
            return Ok(Enqueued::Existing(id));
        }
    }
    Err(sqlx::Error::Protocol(format!(
        "cannot enqueue a {} job: its unique key keeps changing hands",
        kind.name
    )))
}

/// One job by id.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// The delay before attempt `attempts + 1`, after `attempts` failed: `base * 2^(attempts-1)`,
/// at most `max`.
pub fn backoff(attempts: i32, base_secs: u64, max_secs: u64) -> chrono::Duration {
    let exponent = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(30);
    let secs = base_secs.saturating_mul(1u64 << exponent).min(max_secs);
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let secs = |n| backoff(n, 30, 600).num_seconds();
        assert_eq!(
            [secs(1), secs(2), secs(3), secs(4), secs(5), secs(6)],
            [30, 60, 120, 240, 480, 600]
        );
        assert_eq!(secs(1000), 600);
        assert_eq!(secs(0), 30);
    }
}

#[cfg(test)]
mod enqueue_part_tests {
    use super::*;

    #[test]
    fn the_wake_up_notifies_the_runners_channel() {
        assert!(WAKE_IF_QUEUED.contains(&format!("pg_notify('{CHANNEL}', '')")));
    }
}
