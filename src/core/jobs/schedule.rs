//! Schedules: cron expressions (config `[schedules]`) in the business timezone that enqueue jobs.
//!
//! Whether a run is due is decided from the last occurrence acted on, persisted in
//! `schedule_runs`, never from in-memory timers: the most recent occurrence at or before now is
//! due when it is later than the persisted one. So a run missed while the server was down runs
//! once at the next start (not once per missed occurrence), a double trigger is harmless, and the
//! daylight-saving shifts neither skip nor double a run (occurrences are compared as instants;
//! croner resolves local times in the zone). tokio-cron-scheduler only provides the trigger
//! (every minute, plus once at startup); its own timezone handling is not relied on (it fixes
//! the UTC offset when a job is created).

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::core::audit::verify;
use crate::core::config::SchedulesConfig;
use crate::core::jobs::runner::{Handler, JobContext};
use crate::core::jobs::{self, JobKind};
use crate::core::security::events::{self, EventKind, Origin, SecurityEvent};
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::shared::cron::parse_cron;

/// Verifies the audit chain (a broken chain is a security event and a dead job: retrying cannot mend it).
pub const AUDIT_VERIFY: JobKind = JobKind {
    name: "audit.verify",
    max_attempts: 1,
    description: "Verify the audit chain",
    retryable: true,
};

/// Prunes finished jobs past `jobs.keep_days` and idempotency keys past 7 days.
pub const PRUNE: JobKind = JobKind {
    name: "maintenance.prune",
    max_attempts: 3,
    description: "Prune old job history, expired idempotency keys, login counters, security events and the change feed's outbox",
    retryable: true,
};

/// Idempotency keys are kept at least this long (SPEC: clients may retry for a week).
pub const IDEMPOTENCY_KEEP_DAYS: i64 = 7;

/// One configured schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: &'static str,
    pub expression: String,
    /// `None` when switched off.
    pub cron: Option<Cron>,
    pub job: JobKind,
    pub payload: Value,
}

/// What the schedule of one configuration entry enqueues. Capabilities contribute theirs
/// (`backup::jobs::schedules`, [`maintenance_schedules`]); the server gathers them into the
/// state's [`ScheduledJobs`].
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    /// The entry's name under `[schedules]`.
    pub name: &'static str,
    pub job: JobKind,
    pub payload: Value,
}

/// Every schedule's job (a part of the state).
#[derive(Debug, Clone, Default)]
pub struct ScheduledJobs(pub Vec<ScheduledJob>);

/// The schedules of the jobs module's own maintenance jobs.
pub fn maintenance_schedules() -> Vec<ScheduledJob> {
    vec![
        ScheduledJob {
            name: "audit_verify",
            job: AUDIT_VERIFY,
            payload: json!({}),
        },
        ScheduledJob {
            name: "prune",
            job: PRUNE,
            payload: json!({}),
        },
    ]
}

/// The configured schedules, each with its job (an entry no capability gave a job is left out).
pub fn schedules(config: &SchedulesConfig, jobs: &ScheduledJobs) -> Vec<Schedule> {
    config
        .entries()
        .into_iter()
        .filter_map(|(name, expression)| {
            let scheduled = jobs.0.iter().find(|j| j.name == name)?;
            Some(Schedule {
                name,
                expression: expression.to_owned(),
                // Validated with the configuration; an invalid one here means off.
                cron: parse_cron(expression).ok().flatten(),
                job: scheduled.job,
                payload: scheduled.payload.clone(),
            })
        })
        .collect()
}

/// The most recent occurrence of `cron` at or before `now`, in `tz`.
pub fn latest_occurrence(cron: &Cron, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // Occurrences are whole seconds (croner may carry the sub-second part of `now` along,
    // which the database would then round differently).
    cron.find_previous_occurrence(&now.with_timezone(&tz), true)
        .ok()
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(0))
}

/// The next occurrence of `cron` after `now`, in `tz`.
pub fn next_occurrence(cron: &Cron, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(0))
}

/// Enqueues the job of every schedule that has an occurrence after its persisted last one and
/// not after `now`. A schedule seen for the first time starts from `now` (no catch-up for the
/// past before it existed). Returns what was enqueued.
pub async fn tick(state: &AppState) -> anyhow::Result<Vec<(&'static str, Uuid)>> {
    let mut conn = state.pool().acquire().await?;
    let Some(business) = Business::load(&mut conn).await? else {
        return Ok(Vec::new());
    };
    drop(conn);
    let now = state.clock().now();
    let mut enqueued = Vec::new();
    for schedule in schedules(&state.config().schedules, state.part()) {
        let Some(cron) = &schedule.cron else { continue };
        let Some(latest) = latest_occurrence(cron, business.timezone, now) else {
            continue;
        };
        let mut tx = state.pool().begin().await?;
        sqlx::query(
            "INSERT INTO schedule_runs (name, last_due_at, updated_at) VALUES ($1, $2, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(schedule.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let last: DateTime<Utc> =
            sqlx::query_scalar("SELECT last_due_at FROM schedule_runs WHERE name = $1 FOR UPDATE")
                .bind(schedule.name)
                .fetch_one(&mut *tx)
                .await?;
        if latest <= last {
            // Commits the first sighting, if this was one.
            tx.commit().await?;
            continue;
        }
        let job = jobs::enqueue(
            &mut tx,
            &schedule.job,
            schedule.payload.clone(),
            Some(&format!("schedule:{}", schedule.name)),
            now,
        )
        .await?;
        sqlx::query(
            "UPDATE schedule_runs SET last_due_at = $2, last_job_id = $3, updated_at = $4 WHERE name = $1",
        )
        .bind(schedule.name)
        .bind(latest)
        .bind(job.id())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(schedule = schedule.name, due = %latest, job_id = %job.id(), "schedule due: job enqueued");
        enqueued.push((schedule.name, job.id()));
    }
    Ok(enqueued)
}

/// Ticks once now (missed runs) and then every minute, triggered by tokio-cron-scheduler.
pub async fn run(state: AppState) -> anyhow::Result<()> {
    if let Err(e) = tick(&state).await {
        tracing::warn!(
            error = format!("{e:#}"),
            "schedules: cannot check for due runs"
        );
    }
    let scheduler = tokio_cron_scheduler::JobScheduler::new()
        .await
        .context("cannot start the scheduler")?;
    let ticking = state.clone();
    let job = tokio_cron_scheduler::Job::new_async("0 * * * * *", move |_id, _lock| {
        let state = ticking.clone();
        Box::pin(async move {
            if let Err(e) = tick(&state).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "schedules: cannot check for due runs"
                );
            }
        })
    })
    .context("cannot create the scheduler trigger")?;
    scheduler
        .add(job)
        .await
        .context("cannot add the scheduler trigger")?;
    scheduler
        .start()
        .await
        .context("cannot start the scheduler")?;
    // The scheduler runs on its own tasks; keep them alive as long as this task lives.
    std::future::pending::<()>().await;
    Ok(())
}

/// A schedule as `GET /api/v1/schedules` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleView {
    pub name: String,
    /// The cron expression, or `off`.
    pub cron: String,
    pub enabled: bool,
    /// The business timezone the expression is read in.
    pub timezone: String,
    /// The kind of job each run enqueues.
    pub job_kind: String,
    /// The last occurrence that enqueued a job (or when the schedule was first seen).
    pub last_due_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<Uuid>,
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Every schedule with its persisted last run and its next run.
pub async fn views(state: &AppState) -> anyhow::Result<Vec<ScheduleView>> {
    let mut conn = state.pool().acquire().await?;
    let tz = Business::load(&mut conn)
        .await?
        .map(|b| b.timezone)
        .unwrap_or(Tz::UTC);
    let runs: Vec<(String, DateTime<Utc>, Option<Uuid>)> =
        sqlx::query_as("SELECT name, last_due_at, last_job_id FROM schedule_runs")
            .fetch_all(&mut *conn)
            .await?;
    let now = state.clock().now();
    Ok(schedules(&state.config().schedules, state.part())
        .into_iter()
        .map(|s| {
            let run = runs.iter().find(|r| r.0 == s.name);
            ScheduleView {
                name: s.name.to_owned(),
                cron: s.expression.clone(),
                enabled: s.cron.is_some(),
                timezone: tz.name().to_owned(),
                job_kind: s.job.name.to_owned(),
                last_due_at: run.map(|r| r.1),
                last_job_id: run.and_then(|r| r.2),
                next_run_at: s.cron.as_ref().and_then(|c| next_occurrence(c, tz, now)),
            }
        })
        .collect())
}

/// Handlers of the maintenance jobs the schedules enqueue (backups have their own).
pub fn maintenance_handlers() -> Vec<Handler> {
    vec![
        Handler::new(AUDIT_VERIFY, audit_verify),
        Handler::new(PRUNE, prune),
    ]
}

async fn audit_verify(ctx: JobContext) -> anyhow::Result<Value> {
    let pool: &PgPool = ctx.state.pool();
    let report = verify::verify_instance(pool, &ctx.state.data_dir().keys(), Vec::new()).await?;
    if !report.ok {
        let mut conn = pool.acquire().await?;
        events::record(
            &mut conn,
            SecurityEvent {
                kind: EventKind::AuditVerificationFailed,
                user_id: None,
                username: None,
                origin: &Origin::default(),
                details: json!({"first_bad_seq": report.first_bad_seq, "reason": report.reason, "job_id": ctx.job.id}),
            },
        )
        .await?;
        anyhow::bail!(
            "the audit chain is broken at record {}: {}",
            report.first_bad_seq.unwrap_or_default(),
            report.reason.unwrap_or_default()
        );
    }
    Ok(serde_json::to_value(&report)?)
}

async fn prune(ctx: JobContext) -> anyhow::Result<Value> {
    let now = ctx.state.clock().now();
    let keep = chrono::Duration::days(i64::from(ctx.state.config().jobs.keep_days));
    let jobs =
        sqlx::query("DELETE FROM jobs WHERE status IN ('succeeded', 'dead') AND finished_at < $1")
            .bind(now - keep)
            .execute(ctx.state.pool())
            .await?
            .rows_affected();
    let keys = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(now - chrono::Duration::days(IDEMPOTENCY_KEEP_DAYS))
        .execute(ctx.state.pool())
        .await?
        .rows_affected();
    let mut conn = ctx.state.pool().acquire().await?;
    let login_counters = crate::core::auth::throttle::prune(&mut conn, now).await?;
    // Security events are append-only for the server's role: old ones leave through the
    // database function that keeps at least 30 days whatever it is asked.
    let retention = i64::from(ctx.state.config().auth.security_events_retention_days);
    let events: i64 = sqlx::query_scalar("SELECT prune_security_events($1)")
        .bind(now - chrono::Duration::days(retention))
        .fetch_one(&mut *conn)
        .await?;
    // The change feed's outbox: behind every till, and past its retention for tills away longer.
    let stored = crate::core::settings::store::load(&mut conn).await?;
    let outbox_days = stored
        .values
        .get("sync.outbox_retention_days")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    let outbox =
        crate::core::sync::prune(&mut conn, chrono::Duration::days(outbox_days), now).await?;
    // Log files rotate daily and are pruned by the appender itself (log.retention_days).
    Ok(json!({
        "jobs_deleted": jobs,
        "idempotency_keys_deleted": keys,
        "login_counters_deleted": login_counters,
        "security_events_deleted": events,
        "sync_outbox_deleted": outbox,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn expressions_are_checked() {
        assert!(parse_cron("off").unwrap().is_none());
        assert!(parse_cron("0 2 * * *").unwrap().is_some());
        assert!(parse_cron("0 2 * *").is_err());
        assert!(
            parse_cron("0 0 2 * * *").is_err(),
            "seconds are not offered"
        );
        assert!(parse_cron("99 2 * * *").is_err());
    }

    #[test]
    fn occurrences_are_read_in_the_business_timezone() {
        let cron = parse_cron("0 2 * * *").unwrap().unwrap();
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-07-01 02:00 in Berlin is 00:00 UTC (summer time).
        let latest = latest_occurrence(&cron, berlin, utc("2026-07-01T05:00:00Z")).unwrap();
        assert_eq!(latest, utc("2026-07-01T00:00:00Z"));
        let next = next_occurrence(&cron, berlin, utc("2026-07-01T05:00:00Z")).unwrap();
        assert_eq!(next, utc("2026-07-02T00:00:00Z"));
    }

    /// Walks minute by minute across both daylight-saving changes and counts the runs a
    /// persisted-last-occurrence scheduler would start: exactly one per day.
    #[test]
    fn daylight_saving_neither_skips_nor_doubles_a_run() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        for expression in ["30 2 * * *", "0 3 * * *", "15 1 * * *"] {
            let cron = parse_cron(expression).unwrap().unwrap();
            for (from, days) in [("2026-03-27T12:00:00Z", 4), ("2026-10-23T12:00:00Z", 4)] {
                let mut now = utc(from);
                let mut last = now;
                let mut runs = Vec::new();
                let end = now + chrono::Duration::days(days);
                while now < end {
                    if let Some(latest) = latest_occurrence(&cron, berlin, now)
                        && latest > last
                    {
                        runs.push(latest.with_timezone(&berlin).date_naive());
                        last = latest;
                    }
                    now += chrono::Duration::minutes(1);
                }
                let mut days_seen = runs.clone();
                days_seen.dedup();
                assert_eq!(
                    runs.len(),
                    days as usize,
                    "{expression} from {from}: {runs:?}"
                );
                assert_eq!(
                    days_seen.len(),
                    runs.len(),
                    "{expression} from {from}: {runs:?}"
                );
            }
        }
    }
}
