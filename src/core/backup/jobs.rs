//! The backup jobs: create (then verify), verify, restore, retention.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::core::audit::write::Actor;
use crate::core::backup::pipeline::{self, Progress};
use crate::core::backup::restore::{self, RestoreRequest};
use crate::core::backup::{BackupError, Kind, retention_counts, targets};
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

/// Copies a valid backup to one target and reads it back (`{"backup_id", "target"}`). An
/// unreachable target fails the attempt, and the runner tries again with backoff (then the
/// targets check queues it again).
pub const COPY: JobKind = JobKind {
    name: "backup.copy",
    max_attempts: 8,
    description: "Copy a backup to a target",
    retryable: true,
};
/// Checks every target: copies still there, missing ones queued, a target behind reported.
pub const CHECK_TARGETS: JobKind = JobKind {
    name: "backup.targets",
    max_attempts: 1,
    description: "Check the backup targets",
    retryable: true,
};

/// The schedules of backups (`[schedules]` entries `backup_full`, `backup_snapshot`,
/// `backup_retention`, `backup_targets`).
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
        ScheduledJob {
            name: "backup_targets",
            job: CHECK_TARGETS,
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
        Handler::new(COPY, copy),
        Handler::new(CHECK_TARGETS, check_targets),
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
        Ok(manifest) => {
            let mut conn = ctx.state.pool().acquire().await?;
            let mut copies = Vec::new();
            for target in targets_in_force(&ctx.state, &mut conn).await? {
                if target.schedule.is_none() && targets::takes(&target, &manifest) {
                    copies.push(queue_copy(&ctx.state, &mut conn, id, &target.name).await?);
                }
            }
            Ok(
                json!({"backup_id": id, "status": manifest.status, "verified_at": manifest.verified_at, "copy_jobs": copies}),
            )
        }
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
    let from = ctx.job.payload["from"].as_str().map(str::to_owned);
    let details =
        json!({"backup_id": id, "job_id": ctx.job.id, "user_id": actor.user_id, "from": from});
    security_event(&ctx.state, EventKind::RestoreStarted, details.clone()).await;
    let (progress, forward) = progress_for(&ctx);
    let backups = ctx.state.backups();
    let fetched = match &from {
        Some(name) => {
            progress.step("fetch", json!({"backup_id": id, "target": name}));
            fetch_from(&ctx.state, &backups, name, id).await
        }
        None => Ok(()),
    };
    let outcome = match fetched {
        Err(e) => Err(e),
        Ok(()) => {
            restore::restore(
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
            .await
        }
    };
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

/// The backup targets in force: the config file's, then the setting's.
pub async fn targets_in_force(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
) -> anyhow::Result<Vec<targets::Target>> {
    let setting: Option<Value> =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'backup.targets'")
            .fetch_optional(conn)
            .await?;
    Ok(targets::in_force(
        &state.config().backup.targets,
        setting.as_ref(),
    ))
}

/// Fetches backup `id` from the target `name` into the local backups directory.
async fn fetch_from(
    state: &AppState,
    backups: &crate::core::backup::Backups,
    name: &str,
    id: Uuid,
) -> Result<(), BackupError> {
    let mut conn = state
        .pool()
        .acquire()
        .await
        .map_err(|e| BackupError::io("backup.database", "cannot read the targets", e))?;
    let target = targets_in_force(state, &mut conn)
        .await
        .map_err(|e| BackupError::io("backup.database", "cannot read the targets", e))?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| {
            BackupError::new(
                "backup.target_not_found",
                format!("there is no backup target named {name}"),
            )
        })?;
    drop(conn);
    let opened = targets::open(&target, state.data_dir().root())?;
    targets::fetch(backups, &opened, id).await.map(|_| ())
}

/// Queues the copy of backup `id` to `target` (once: a copy already queued or running stays).
async fn queue_copy(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    target: &str,
) -> anyhow::Result<Uuid> {
    let job = jobs::enqueue(
        conn,
        &COPY,
        json!({"backup_id": id, "target": target}),
        Some(&format!("backup.copy:{id}:{target}")),
        state.clock().now(),
    )
    .await?
    .id();
    // The manifest says the copy is waiting (a failed one keeps its error until it is tried).
    let now = state.clock().now();
    state.backups().update(id, |m| {
        m.copies.entry(target.to_owned()).or_insert(targets::Copy {
            status: targets::CopyStatus::Pending,
            updated_at: now,
            verified_at: None,
            error: None,
        });
    })?;
    Ok(job)
}

async fn copy(ctx: JobContext) -> anyhow::Result<Value> {
    let id = backup_id(&ctx.job.payload)?;
    let name = ctx.job.payload["target"].as_str().unwrap_or_default();
    let mut conn = ctx.state.pool().acquire().await?;
    let Some(target) = targets_in_force(&ctx.state, &mut conn)
        .await?
        .into_iter()
        .find(|t| t.name == name)
    else {
        return Ok(json!({"backup_id": id, "target": name, "skipped": "no such target any more"}));
    };
    drop(conn);
    let backups = ctx.state.backups();
    let manifest = match backups.load(id) {
        Ok(m) if m.status == crate::core::backup::Status::Valid => m,
        Ok(_) | Err(_) => {
            return Ok(
                json!({"backup_id": id, "target": name, "skipped": "the backup is gone or not valid"}),
            );
        }
    };
    let outcome = match targets::open(&target, ctx.state.data_dir().root()) {
        Ok(opened) => {
            let copied = targets::copy(&backups, &opened, &manifest).await;
            if copied.is_ok() {
                // Retention at the target; a failure here leaves extra copies, never fewer.
                if let Err(e) = targets::prune(&backups, &opened).await {
                    tracing::warn!(target = %name, error = %e, "cannot apply the target's retention");
                }
            }
            copied
        }
        Err(e) => Err(e),
    };
    targets::record(&backups, id, name, &outcome)?;
    match outcome {
        Ok(()) => Ok(json!({"backup_id": id, "target": name, "status": "verified"})),
        Err(e) => Err(e.into()),
    }
}

/// Checks each target: its copies (by listing: a copy gone or of the wrong size is failed and
/// queued again, with a security event), the backups it lacks (queued, at the target's own
/// schedule when it has one, only those its retention would keep), and whether it is behind.
async fn check_targets(ctx: JobContext) -> anyhow::Result<Value> {
    let state = &ctx.state;
    let mut conn = state.pool().acquire().await?;
    let all = targets_in_force(state, &mut conn).await?;
    let backups = state.backups();
    let now = state.clock().now();
    let tz = crate::core::settings::Business::load(&mut conn)
        .await?
        .map(|b| b.timezone)
        .unwrap_or(chrono_tz::UTC);
    let mut states = targets::states(&backups);
    states.retain(|name, _| all.iter().any(|t| &t.name == name));
    let mut report = serde_json::Map::new();
    for target in &all {
        let state_of = states.entry(target.name.clone()).or_default();
        state_of.checked_at = Some(now);
        state_of.first_seen_at.get_or_insert(now);
        state_of.same_disk = targets::same_disk(target, state.data_dir().root());
        let opened = targets::open(target, state.data_dir().root());
        let found = match &opened {
            Ok(opened) => opened.sizes().await,
            Err(e) => Err(e.clone()),
        };
        let mut outcome = json!({"reachable": found.is_ok()});
        if let (Ok(sizes), Ok(opened)) = (&found, &opened) {
            let mut lost = find_lost_copies(state, &backups, target, sizes).await?;
            lost.extend(read_back_the_oldest(state, &backups, opened, now).await?);
            let due = scheduled_now(target, state_of, tz, now);
            let queued = if due {
                queue_missing_copies(state, &mut conn, &backups, target).await?
            } else {
                Vec::new()
            };
            outcome = json!({"reachable": true, "lost": lost, "queued": queued});
        }
        state_of.reachable = Some(found.is_ok());
        state_of.error = found.as_ref().err().cloned();
        let local = backups.list();
        state_of.newest_copy_at = targets::newest_copy(target, &local);
        state_of.behind = targets::behind(target, &local, now, state_of);
        if state_of.behind
            && state_of
                .behind_reported_at
                .is_none_or(|at| now - at >= chrono::Duration::days(1))
        {
            security_event(
                state,
                EventKind::BackupTargetBehind,
                json!({"target": target.name, "newest_copy_at": state_of.newest_copy_at, "error": state_of.error}),
            )
            .await;
            state_of.behind_reported_at = Some(now);
        }
        outcome["behind"] = json!(state_of.behind);
        report.insert(target.name.clone(), outcome);
    }
    targets::save_states(&backups, &states)?;
    Ok(Value::Object(report))
}

/// The copies recorded as verified at `target` that its listing (`sizes`) no longer has whole:
/// each is recorded failed, with a security event; returns their ids.
async fn find_lost_copies(
    state: &AppState,
    backups: &crate::core::backup::Backups,
    target: &targets::Target,
    sizes: &std::collections::BTreeMap<String, u64>,
) -> anyhow::Result<Vec<Uuid>> {
    let mut lost = Vec::new();
    for m in backups.list() {
        let verified = m
            .copies
            .get(&target.name)
            .is_some_and(|c| c.status == targets::CopyStatus::Verified);
        let file = sizes.get(&format!("{}{}", m.id, crate::core::backup::FILE_SUFFIX));
        let manifest_there =
            sizes.contains_key(&format!("{}{}", m.id, crate::core::backup::MANIFEST_SUFFIX));
        if verified && (file != Some(&m.size_bytes) || !manifest_there) {
            let e = BackupError::new(
                "backup.copy_missing",
                format!(
                    "target {}: the copy is gone or damaged ({} bytes found, {} expected)",
                    target.name,
                    file.copied().unwrap_or(0),
                    m.size_bytes
                ),
            );
            security_event(state, EventKind::BackupCopyFailed, json!({"backup_id": m.id, "target": target.name, "code": e.code, "reason": e.message})).await;
            targets::record(backups, m.id, &target.name, &Err(e))?;
            lost.push(m.id);
        }
    }
    Ok(lost)
}

/// A verified copy is read back whole again (size and SHA-256) once it was last verified this
/// long ago: damage that keeps the size (a flipped bit on a disk) is found within a week,
/// one copy per check, without downloading every copy every time.
const READ_BACK_AFTER_DAYS: i64 = 7;

/// Reads back the copy at `opened` verified longest ago, if that was more than
/// [`READ_BACK_AFTER_DAYS`] ago: a match is verified again, a mismatch is recorded failed (with a
/// security event) and returned, so it is copied again. A target that fails to answer is left
/// for the next check.
async fn read_back_the_oldest(
    state: &AppState,
    backups: &crate::core::backup::Backups,
    opened: &targets::Opened,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<Option<Uuid>> {
    let name = &opened.target.name;
    let due = backups
        .list()
        .into_iter()
        .filter_map(|m| {
            let copy = m.copies.get(name)?;
            let at = copy.verified_at?;
            (copy.status == targets::CopyStatus::Verified
                && now - at > chrono::Duration::days(READ_BACK_AFTER_DAYS))
            .then_some((at, m))
        })
        .min_by_key(|(at, _)| *at);
    let Some((_, m)) = due else {
        return Ok(None);
    };
    let file = format!("{}{}", m.id, crate::core::backup::FILE_SUFFIX);
    let outcome = match opened.read_back(&file).await {
        Err(_) => return Ok(None),
        Ok(Some((size, sha256))) if size == m.size_bytes && sha256 == m.sha256 => Ok(()),
        Ok(found) => Err(BackupError::new(
            "backup.copy_damaged",
            format!(
                "target {name}: the copy read back differs from the backup ({})",
                match found {
                    Some((size, _)) => format!("{size} bytes, another SHA-256"),
                    None => "it is gone".to_owned(),
                }
            ),
        )),
    };
    targets::record(backups, m.id, name, &outcome)?;
    match outcome {
        Ok(()) => Ok(None),
        Err(e) => {
            security_event(
                state,
                EventKind::BackupCopyFailed,
                json!({"backup_id": m.id, "target": name, "code": e.code, "reason": e.message}),
            )
            .await;
            Ok(Some(m.id))
        }
    }
}

/// Is it time to copy to `target`: always without a schedule of its own; with one, when an
/// occurrence passed since copies were last queued for it (which this records).
fn scheduled_now(
    target: &targets::Target,
    state_of: &mut targets::TargetState,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let Some(cron) = target
        .schedule
        .as_deref()
        .and_then(|s| crate::shared::cron::parse_cron(s).ok().flatten())
    else {
        return true;
    };
    let latest = crate::core::jobs::schedule::latest_occurrence(&cron, tz, now);
    let due = latest.is_some_and(|at| state_of.scheduled_at.is_none_or(|last| at > last));
    if due {
        state_of.scheduled_at = Some(now);
    }
    due
}

/// Queues the copies `target` lacks among the valid backups its retention would keep.
async fn queue_missing_copies(
    state: &AppState,
    conn: &mut sqlx::PgConnection,
    backups: &crate::core::backup::Backups,
    target: &targets::Target,
) -> anyhow::Result<Vec<Uuid>> {
    let local = backups.list();
    let candidates: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> = local
        .iter()
        .filter(|m| m.status == crate::core::backup::Status::Valid && targets::takes(target, m))
        .map(|m| (m.id, m.created_at))
        .collect();
    let keep = targets::kept(&candidates, target.retention);
    let mut queued = Vec::new();
    for m in local.iter().filter(|m| keep.contains(&m.id)) {
        let verified = m
            .copies
            .get(&target.name)
            .is_some_and(|c| c.status == targets::CopyStatus::Verified);
        if !verified {
            queued.push(queue_copy(state, conn, m.id, &target.name).await?);
        }
    }
    Ok(queued)
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
            "backup.target_unreachable" | "backup.target_refused" | "backup.target_credentials" => {
                ApiError::Unavailable {
                    what: "backup target",
                    cause: e.message,
                }
            }
            "backup.not_restorable" => ApiError::Conflict {
                code: "backup.not_restorable",
                detail: e.message,
            },
            _ => ApiError::Internal(anyhow::anyhow!(e)),
        }
    }
}
