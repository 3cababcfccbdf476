//! The backup jobs: create (then verify), verify, restore, retention.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::core::audit::write::Actor;
use crate::core::backup::pipeline::{self, Progress};
use crate::core::backup::restore::{self, RestoreRequest};
use crate::core::backup::{BackupError, Kind, retention_counts};
use crate::core::jobs::runner::{Handler, JobContext};
use crate::core::jobs::schedule::ScheduledJob;
use crate::core::jobs::{self, JobKind};
use crate::core::security::events::{self, EventKind, Origin, SecurityEvent};
use crate::core::state::AppState;

/// Takes a backup (`{"backup_id", "kind"}`), then queues its verification.
pub const CREATE: JobKind = JobKind {
    name: "backup.create",
    max_attempts: 3,
    description: "Take a backup",
    retryable: true,
};
/// Verifies a backup (`{"backup_id"}`) by restoring it into a scratch database.
pub const VERIFY: JobKind = JobKind {
    name: "backup.verify",
    max_attempts: 2,
    description: "Verify a backup",
    retryable: true,
};
/// Restores a backup (`{"backup_id", "user_id", "username"}`). Never retried by itself: a
/// restore is started again by a person.
pub const RESTORE: JobKind = JobKind {
    name: "backup.restore",
    max_attempts: 1,
    description: "Restore a backup",
    retryable: false,
};
/// Deletes backups beyond the retention counts.
pub const RETENTION: JobKind = JobKind {
    name: "backup.retention",
    max_attempts: 3,
    description: "Apply backup retention",
    retryable: true,
};

/// The schedules of backups (`[schedules]` entries `backup_full`, `backup_snapshot`,
/// `backup_retention`).
pub fn schedules() -> Vec<ScheduledJob> {
    vec![
        ScheduledJob {
            name: "backup_full",
            job: CREATE,
            payload: serde_json::json!({"kind": "full"}),
        },
        ScheduledJob {
            name: "backup_snapshot",
            job: CREATE,
            payload: serde_json::json!({"kind": "snapshot"}),
        },
        ScheduledJob {
            name: "backup_retention",
            job: RETENTION,
            payload: serde_json::json!({}),
        },
    ]
}

pub fn handlers() -> Vec<Handler> {
    vec![
        Handler::new(CREATE, create),
        Handler::new(VERIFY, verify),
        Handler::new(RESTORE, restore),
        Handler::new(RETENTION, retention),
    ]
}

fn backup_id(payload: &Value) -> anyhow::Result<Uuid> {
    payload
        .get("backup_id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| anyhow::anyhow!("the job has no backup_id"))
}

/// Forwards pipeline progress to the job (and so to the `jobs` topic) until dropped.
fn progress_for(ctx: &JobContext) -> (Progress, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let ctx = ctx.clone();
    let forward = tokio::spawn(async move {
        while let Some(step) = rx.recv().await {
            ctx.progress(step).await;
        }
    });
    (Progress::new(tx), forward)
}

async fn security_event(state: &AppState, kind: EventKind, details: Value) {
    let recorded = async {
        let mut conn = state.pool().acquire().await?;
        events::record(
            &mut conn,
            SecurityEvent {
                kind,
                user_id: details
                    .get("user_id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok()),
                username: None,
                origin: &Origin::default(),
                details: details.clone(),
            },
        )
        .await
    }
    .await;
    if let Err(e) = recorded {
        tracing::error!(kind = kind.as_str(), error = %e, "cannot record a security event");
    }
}

/// Queues the verification of `id` (once).
pub async fn queue_verify(state: &AppState, id: Uuid) -> anyhow::Result<Uuid> {
    let mut conn = state.pool().acquire().await?;
    Ok(jobs::enqueue(
        &mut conn,
        &VERIFY,
        json!({"backup_id": id}),
        Some(&format!("backup.verify:{id}")),
        state.clock().now(),
    )
    .await?
    .id())
}

async fn create(ctx: JobContext) -> anyhow::Result<Value> {
    // Scheduled backups carry no id: the job's id serves, stable across retries.
    let id = backup_id(&ctx.job.payload).unwrap_or(ctx.job.id);
    let kind: Kind = ctx
        .job
        .payload
        .get("kind")
        .and_then(Value::as_str)
        .and_then(|k| k.parse().ok())
        .unwrap_or(Kind::Full);
    let (progress, forward) = progress_for(&ctx);
    let outcome =
        pipeline::create(&ctx.state.backups(), id, kind, Some(ctx.job.id), &progress).await;
    drop(progress);
    let _ = forward.await;
    match outcome {
        Ok(manifest) => {
            let verify_job = queue_verify(&ctx.state, id).await?;
            Ok(
                json!({"backup_id": id, "size_bytes": manifest.size_bytes, "sha256": manifest.sha256, "verify_job_id": verify_job}),
            )
        }
        Err(e) => {
            security_event(
                &ctx.state,
                EventKind::BackupFailed,
                json!({"backup_id": id, "code": e.code, "reason": e.message, "job_id": ctx.job.id}),
            )
            .await;
            Err(e.into())
        }
    }
}

async fn verify(ctx: JobContext) -> anyhow::Result<Value> {
    let id = backup_id(&ctx.job.payload)?;
    let (progress, forward) = progress_for(&ctx);
    let outcome = pipeline::verify(&ctx.state.backups(), id, &progress).await;
    drop(progress);
    let _ = forward.await;
    match outcome {
        Ok(manifest) => Ok(
            json!({"backup_id": id, "status": manifest.status, "verified_at": manifest.verified_at}),
        ),
        Err(e) => {
            if e.code != "backup.not_found" {
                security_event(&ctx.state, EventKind::BackupInvalid, json!({"backup_id": id, "code": e.code, "reason": e.message, "job_id": ctx.job.id})).await;
            }
            Err(e.into())
        }
    }
}

async fn restore(ctx: JobContext) -> anyhow::Result<Value> {
    let id = backup_id(&ctx.job.payload)?;
    let actor = Actor {
        user_id: ctx
            .job
            .payload
            .get("user_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok()),
        username: ctx
            .job
            .payload
            .get("username")
            .and_then(Value::as_str)
            .map(str::to_owned),
        role: Some("super_admin".to_owned()),
        ..Actor::default()
    };
    let details = json!({"backup_id": id, "job_id": ctx.job.id, "user_id": actor.user_id});
    security_event(&ctx.state, EventKind::RestoreStarted, details.clone()).await;
    let (progress, forward) = progress_for(&ctx);
    let backups = ctx.state.backups();
    let outcome = restore::restore(
        &backups,
        RestoreRequest {
            backup_id: id,
            actor,
            pool: ctx.state.pool(),
            maintenance: Some(ctx.state.maintenance()),
            job: Some(&ctx.job),
        },
        &progress,
    )
    .await;
    drop(progress);
    let _ = forward.await;
    match outcome {
        Ok(result) => {
            // What the server read from the database at start now comes from the restored one.
            match ctx.state.registry().sync(ctx.state.pool()).await {
                Ok(states) => {
                    for (id, enabled) in states {
                        ctx.state.modules().set(&id, enabled);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot re-read the module states after a restore; restart the server")
                }
            }
            security_event(&ctx.state, EventKind::RestoreCompleted, details).await;
            if let Some(pre) = result
                .get("pre_restore_backup_id")
                .filter(|_| result["previous_database_kept"].is_null())
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
            {
                queue_verify(&ctx.state, pre).await?;
            }
            Ok(result)
        }
        Err(e) => {
            let mut details = details;
            details["code"] = json!(e.code);
            details["reason"] = json!(e.message);
            security_event(&ctx.state, EventKind::RestoreFailed, details).await;
            Err(e.into())
        }
    }
}

async fn retention(ctx: JobContext) -> anyhow::Result<Value> {
    let mut conn = ctx.state.pool().acquire().await?;
    let keep = retention_counts(&mut conn).await?;
    drop(conn);
    let backups = ctx.state.backups();
    let partials = backups.remove_partials();
    let deleted = backups.apply_retention(keep).map_err(anyhow::Error::from)?;
    Ok(json!({"deleted": deleted, "partial_files_removed": partials}))
}

impl From<BackupError> for crate::core::http::ApiError {
    fn from(e: BackupError) -> Self {
        use crate::core::http::ApiError;
        match e.code.as_str() {
            "backup.not_found" => ApiError::NotFound {
                code: "backup.not_found",
                detail: e.message,
            },
            "backup.not_restorable" => ApiError::Conflict {
                code: "backup.not_restorable",
                detail: e.message,
            },
            _ => ApiError::Internal(anyhow::anyhow!(e)),
        }
    }
}
