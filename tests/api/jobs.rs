//! The job queue and the schedules.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plugpos::core::jobs::runner::{Handler, Handlers, Runner};
use plugpos::core::jobs::{self, Enqueued, JobKind};
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, problem};

const FLAKY: JobKind = JobKind {
    name: "test.flaky",
    max_attempts: 3,
    description: "fails until told otherwise",
    retryable: true,
};
const STUCK: JobKind = JobKind {
    name: "test.stuck",
    max_attempts: 3,
    description: "hangs on its first attempt",
    retryable: true,
};

async fn enqueue(app: &TestApp, kind: &JobKind, key: Option<&str>) -> Enqueued {
    let mut conn = app.state.pool().acquire().await.unwrap();
    jobs::enqueue(&mut conn, kind, json!({"n": 1}), key, app.clock.now())
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_jobs_back_off_then_dead_letter_and_can_be_retried() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.jobs.backoff_base_secs = 10;
        c.jobs.backoff_max_secs = 15;
    })
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let runner = Runner::new(
        app.state.clone(),
        Handlers::new([Handler::new(FLAKY, move |ctx| {
            let calls = counted.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if ctx.job.payload["ok"] == true {
                    return Ok(json!({"call": n}));
                }
                anyhow::bail!("printer offline (call {n})")
            }
        })]),
    );
    let id = enqueue(&app, &FLAKY, None).await.id();

    let first = runner.work_one().await.unwrap().unwrap();
    assert_eq!((first.status.as_str(), first.attempts), ("failed", 1));
    assert_eq!(
        first.last_error.as_deref(),
        Some("printer offline (call 1)")
    );
    assert_eq!(
        first.run_at,
        app.clock.now().trunc_subsecs_micro() + chrono::Duration::seconds(10)
    );
    // Not due before its backoff has passed.
    assert!(runner.work_one().await.unwrap().is_none());
    app.clock.advance(chrono::Duration::seconds(10));
    let second = runner.work_one().await.unwrap().unwrap();
    assert_eq!((second.status.as_str(), second.attempts), ("failed", 2));
    // The doubled delay (20 s) is capped at 15 s.
    app.clock.advance(chrono::Duration::seconds(15));
    let third = runner.work_one().await.unwrap().unwrap();
    assert_eq!((third.status.as_str(), third.attempts), ("dead", 3));
    assert!(third.finished_at.is_some());
    app.clock.advance(chrono::Duration::hours(1));
    assert!(
        runner.work_one().await.unwrap().is_none(),
        "dead jobs stay dead"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let admin = app.token("admin", ADMIN_PASSWORD).await;

    // Listed by status and kind; retried by an admin (audited); only dead ones.
    let dead: Value = app
        .get_as("/api/v1/jobs?status=dead&kind=test.flaky", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(dead["items"][0]["id"], id.to_string(), "{dead}");
    problem(
        app.get_as("/api/v1/jobs?status=sleeping", &admin).await,
        422,
        "validation.failed",
    )
    .await;
    sqlx::query("UPDATE jobs SET payload = '{\"ok\": true}' WHERE id = $1")
        .bind(id)
        .execute(&app.pool)
        .await
        .unwrap();
    let retried = app
        .post_as(&format!("/api/v1/jobs/{id}/retry"), &admin, &json!({}))
        .await;
    assert_eq!(retried.status(), 200);
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(
        (retried["status"].as_str(), retried["attempts"].as_i64()),
        (Some("queued"), Some(0))
    );
    let again = app
        .post_as(&format!("/api/v1/jobs/{id}/retry"), &admin, &json!({}))
        .await;
    problem(again, 409, "job.not_dead").await;
    let done = runner.work_one().await.unwrap().unwrap();
    assert_eq!(done.status, "succeeded");
    assert_eq!(done.result, Some(json!({"call": 4})));
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_records WHERE action = 'job.retry'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, 1);
    let fetched: Value = app
        .get_as(&format!("/api/v1/jobs/{id}"), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["status"], "succeeded");
    problem(
        app.get_as(&format!("/api/v1/jobs/{}", uuid::Uuid::now_v7()), &admin)
            .await,
        404,
        "job.not_found",
    )
    .await;
}

trait Micro {
    fn trunc_subsecs_micro(self) -> Self;
}

impl Micro for chrono::DateTime<chrono::Utc> {
    /// PostgreSQL keeps microseconds.
    fn trunc_subsecs_micro(self) -> Self {
        use chrono::SubsecRound;
        self.trunc_subsecs(6)
    }
}

#[tokio::test]
async fn jobs_exist_only_if_the_enqueuing_transaction_commits_and_unique_keys_dedupe() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let mut tx = app.state.pool().begin().await.unwrap();
    jobs::enqueue(&mut tx, &FLAKY, json!({}), None, app.clock.now())
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "a rolled-back enqueue leaves no job");

    let first = enqueue(&app, &FLAKY, Some("daily-report")).await;
    let second = enqueue(&app, &FLAKY, Some("daily-report")).await;
    assert!(matches!(first, Enqueued::New(_)));
    assert_eq!(second, Enqueued::Existing(first.id()));
    // Once finished, the key is free again.
    sqlx::query("UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = $1")
        .bind(first.id())
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(matches!(
        enqueue(&app, &FLAKY, Some("daily-report")).await,
        Enqueued::New(_)
    ));
}

#[tokio::test]
async fn a_job_whose_worker_was_killed_is_rescued_and_runs_again() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.jobs.heartbeat_secs = 1;
        c.jobs.rescue_after_secs = 60;
    })
    .await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counted = attempts.clone();
    let handlers = Handlers::new([Handler::new(STUCK, move |_ctx| {
        let attempts = counted.clone();
        async move {
            if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                // The first attempt never ends: its worker is killed below.
                std::future::pending::<()>().await;
            }
            Ok(json!({"done": true}))
        }
    })]);
    let id = enqueue(&app, &STUCK, Some("stuck")).await.id();
    let runner = Runner::new(app.state.clone(), handlers.clone());
    let worker = tokio::spawn(async move { runner.work_one().await });
    while attempts.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    worker.abort();
    let _ = worker.await;
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "running", "the killed worker left it running");

    let runner = Runner::new(app.state.clone(), handlers);
    assert!(
        runner.rescue().await.unwrap().is_empty(),
        "not before the timeout"
    );
    app.clock.advance(chrono::Duration::seconds(61));
    let rescued = runner.rescue().await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].status, "failed");
    assert!(
        rescued[0]
            .last_error
            .as_ref()
            .unwrap()
            .contains("worker stopped during attempt 1"),
        "{rescued:?}"
    );
    let done = runner.work_one().await.unwrap().unwrap();
    assert_eq!((done.status.as_str(), done.attempts), ("succeeded", 2));
}

#[tokio::test]
async fn a_schedule_missed_during_downtime_runs_once() {
    let app = TestApp::spawn_initialized_with(|c| {
        c.schedules.prune = "0 4 * * *".to_owned();
        c.schedules.backup_snapshot = "off".to_owned();
    })
    .await;
    // First sight: the schedules start from now, nothing is due.
    let first = plugpos::core::jobs::schedule::tick(&app.state)
        .await
        .unwrap();
    assert!(first.is_empty(), "{first:?}");
    // The server is down for three days: three 04:00 runs were missed.
    app.clock.advance(chrono::Duration::days(3));
    let due = plugpos::core::jobs::schedule::tick(&app.state)
        .await
        .unwrap();
    let names: Vec<&str> = due.iter().map(|d| d.0).collect();
    assert!(names.contains(&"prune"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "prune").count(), 1);
    assert!(!names.contains(&"backup_snapshot"), "switched off");
    // A second trigger at the same time enqueues nothing more.
    let again = plugpos::core::jobs::schedule::tick(&app.state)
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    let prune_jobs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'maintenance.prune'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(prune_jobs, 1);

    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let schedules: Value = app
        .get_as("/api/v1/schedules", &admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    let prune = schedules
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "prune")
        .unwrap();
    assert_eq!(prune["timezone"], "Europe/Berlin");
    assert_eq!(prune["job_kind"], "maintenance.prune");
    assert!(prune["next_run_at"].as_str().unwrap() > prune["last_due_at"].as_str().unwrap());
    let snapshot = schedules
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "backup_snapshot")
        .unwrap();
    assert_eq!(snapshot["enabled"], false);

    // The prune job removes old finished jobs and week-old idempotency keys.
    sqlx::query("INSERT INTO jobs (id, kind, status, max_attempts, run_at, finished_at) VALUES ($1, 'test.flaky', 'succeeded', 1, $2, $2)")
        .bind(uuid::Uuid::now_v7())
        .bind(app.clock.now() - chrono::Duration::days(40))
        .execute(&app.pool)
        .await
        .unwrap();
    let done = app.run_jobs().await;
    let prune = done.iter().find(|j| j.kind == "maintenance.prune").unwrap();
    assert_eq!(prune.status, "succeeded", "{done:?}");
    assert_eq!(prune.result.as_ref().unwrap()["jobs_deleted"], 1);
}

/// A restore runs only when a super admin asks for it with the business's name: a dead one is
/// not queued again through the generic retry, whoever holds `administration.jobs.manage`
/// (issue 28, finding 6).
#[tokio::test]
async fn a_dead_restore_is_not_retried_through_the_jobs_endpoint() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO jobs (id, kind, status, max_attempts, attempts, run_at, finished_at, payload) \
         VALUES ($1, 'backup.restore', 'dead', 1, 1, $2, $2, '{\"backup_id\": \"x\"}')",
    )
    .bind(id)
    .bind(app.clock.now())
    .execute(&app.pool)
    .await
    .unwrap();
    problem(
        app.post_as(&format!("/api/v1/jobs/{id}/retry"), &admin, &json!({}))
            .await,
        409,
        "job.not_retryable",
    )
    .await;
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(status, "dead");
}
