//! The guided restore.
//!
//! 1. Enter maintenance mode (the API answers 503 `maintenance`).
//! 2. Restore the chosen backup into a new database and check it there (checksum, decryption,
//!    pg_restore, audit chain, row counts). The live database is not touched if this fails.
//! 3. Meanwhile (side by side with 2), take a pre-restore backup of the current state.
//! 4. Switch: in one transaction, rename the live database away and the restored one into its
//!    place (PostgreSQL renames databases transactionally: either both happen or neither).
//! 5. Record the restore in the restored database's audit log; if that fails, switch back.
//! 6. Drop the previous database (the pre-restore backup keeps its contents) and leave
//!    maintenance mode.
//!
//! A restore killed at any point leaves the live database in place under its name: before the
//! switch nothing touched it, the switch is atomic, and after it the restored database is live.
//! Leftover scratch databases are dropped at the next start ([`recover`]).

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::core::audit::write::{Actor, AuditedTx, Change};
use crate::core::backup::pipeline::{self, Progress, drop_database, scratch_name};
use crate::core::backup::{BackupError, Backups, Kind, Status};
use crate::core::jobs::{COLUMNS, Job};
use crate::core::state::Maintenance;
use crate::shared::ids::new_id;

/// Who restores, and where the restored database's audit record goes.
pub struct RestoreRequest<'a> {
    pub backup_id: Uuid,
    pub actor: Actor,
    /// The application's pool on the business database (it follows the switch).
    pub pool: &'a PgPool,
    /// Maintenance mode of the running server (`None` for the CLI with the server stopped).
    pub maintenance: Option<&'a Maintenance>,
    /// The job running the restore: its row is carried into the restored database.
    pub job: Option<&'a Job>,
}

/// Runs the whole restore; returns what happened (backup ids, timings) or why it stopped.
pub async fn restore(
    backups: &Backups,
    request: RestoreRequest<'_>,
    progress: &Progress,
) -> Result<Value, BackupError> {
    let id = request.backup_id;
    let mut manifest = backups.load(id)?;
    if matches!(manifest.status, Status::Failed | Status::Invalid) {
        return Err(BackupError::new(
            "backup.not_restorable",
            format!(
                "backup {id} is {}: {}",
                if manifest.status == Status::Failed {
                    "failed"
                } else {
                    "invalid"
                },
                manifest
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("no reason recorded")
            ),
        ));
    }
    let live = backups.target.database();
    let incoming = scratch_name(&live, "restore", id);

    // 1. Maintenance: from here the API refuses work until we are done, so the state the
    //    pre-restore backup captures is the last one.
    let started = std::time::Instant::now();
    let mut timings = serde_json::Map::new();
    let mut lap = |name: &str, since: &mut std::time::Instant| {
        timings.insert(format!("{name}_ms"), json!(since.elapsed().as_millis()));
        *since = std::time::Instant::now();
    };
    let mut since = started;
    progress.step("maintenance", json!({}));
    let _maintenance = request
        .maintenance
        .map(|m| m.enter(format!("restoring backup {id}")));

    // 2 and 3, side by side (one reads the live database, the other writes a new one): restore
    // and check the backup beside the live database, and take the safety backup of the live one.
    progress.step("verify", json!({"backup_id": id}));
    let pre_id = new_id();
    let quiet = Progress::default();
    let (checked, safety) = tokio::join!(
        pipeline::restore_checked(backups, &manifest, &incoming, progress),
        pipeline::create(
            backups,
            pre_id,
            Kind::PreRestore,
            request.job.map(|j| j.id),
            &quiet,
        )
    );
    if let Err(e) = checked {
        // Nothing changed: the safety backup is not needed.
        let _ = backups.delete(pre_id);
        manifest.status = Status::Invalid;
        manifest.error = Some(e.clone());
        manifest.verified_at = Some(backups.clock.now());
        backups.save(&manifest)?;
        return Err(e);
    }
    manifest.status = Status::Valid;
    manifest.error = None;
    manifest.verified_at = Some(backups.clock.now());
    backups.save(&manifest)?;
    if let Err(e) = safety {
        drop_database(backups, &incoming).await;
        return Err(BackupError::new(
            "restore.pre_restore_backup_failed",
            format!(
                "the backup of the current state failed, nothing was restored: {}",
                e.message
            ),
        ));
    }

    // 4. The switch.
    lap("verify_and_safety_backup", &mut since);
    progress.step("switch", json!({}));
    let previous = scratch_name(&live, "pre_restore", pre_id);
    if let Err(e) = swap(backups, &[(&live, &previous), (&incoming, &live)]).await {
        drop_database(backups, &incoming).await;
        return Err(e);
    }

    // 5. The record, in the restored chain.
    lap("switch", &mut since);
    progress.step("record", json!({}));
    let recorded = record(&request, &manifest.id, pre_id, backups).await;
    if let Err(e) = recorded {
        let failed = scratch_name(&live, "failed", id);
        let back = swap(backups, &[(&live, &failed), (&previous, &live)]).await;
        drop_database(backups, &failed).await;
        return Err(match back {
            Ok(()) => BackupError::new(
                "restore.record_failed",
                format!(
                    "the restore could not be recorded, the previous database is back: {}",
                    e.message
                ),
            ),
            Err(b) => b,
        });
    }

    // 6. Done.
    drop_database(backups, &previous).await;
    lap("record_and_drop_previous", &mut since);
    timings.insert("total_ms".to_owned(), json!(started.elapsed().as_millis()));
    progress.step("done", json!({}));
    Ok(json!({
        "backup_id": id,
        "pre_restore_backup_id": pre_id,
        "audit_chain_head": manifest.audit_chain_head,
        "timings": timings,
    }))
}

/// Renames databases in one transaction (after ending the sessions on them), retrying while
/// reconnecting clients get in the way.
async fn swap(backups: &Backups, renames: &[(&str, &str)]) -> Result<(), BackupError> {
    let mut admin = backups.target.connect(Some("postgres")).await?;
    let mut last_error = None;
    for _ in 0..50 {
        let names: Vec<String> = renames.iter().map(|(from, _)| (*from).to_owned()).collect();
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
        )
        .bind(&names)
        .execute(&mut admin)
        .await;
        let attempt = async {
            let mut tx = admin.begin().await?;
            for (from, to) in renames {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE \"{from}\" RENAME TO \"{to}\""
                )))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await;
        match attempt {
            Ok(()) => {
                let _ = admin.close().await;
                return Ok(());
            }
            Err(e) => {
                last_error = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Err(BackupError::io(
        "restore.switch_failed",
        "cannot switch databases (sessions kept reconnecting); the live database is unchanged",
        last_error.map(|e| e.to_string()).unwrap_or_default(),
    ))
}

/// Writes the restore into the audit log of the (now live) restored database, and carries the
/// running job's row over so its outcome can be recorded there.
async fn record(
    request: &RestoreRequest<'_>,
    backup_id: &Uuid,
    pre_id: Uuid,
    backups: &Backups,
) -> Result<(), BackupError> {
    let mut last = None;
    // The pool's connections were ended by the switch; it reconnects, to the restored database.
    for _ in 0..10 {
        let attempt = async {
            let mut tx = AuditedTx::begin(request.pool, request.actor.clone(), backups.clock.now()).await?;
            tx.record(
                Change::new("core.backup", "backup", backup_id, "backup.restore").after(json!({
                    "backup_id": backup_id,
                    "pre_restore_backup_id": pre_id,
                    "job_id": request.job.map(|j| j.id),
                })),
            )
            .await?;
            if let Some(job) = request.job {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO jobs ({COLUMNS}, heartbeat_at) \
                     VALUES ($1, $2, 'running', $3, $4, $5, $6, $7, $8, NULL, NULL, NULL, NULL, $9, $10, $8) \
                     ON CONFLICT (id) DO UPDATE SET status = 'running', attempts = EXCLUDED.attempts, \
                         heartbeat_at = EXCLUDED.heartbeat_at, finished_at = NULL, updated_at = EXCLUDED.updated_at"
                )))
                .bind(job.id)
                .bind(&job.kind)
                .bind(&job.payload)
                .bind(&job.unique_key)
                .bind(job.attempts)
                .bind(job.max_attempts)
                .bind(job.run_at)
                .bind(job.started_at)
                .bind(job.created_at)
                .bind(backups.clock.now())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok::<(), crate::core::audit::write::AuditError>(())
        }
        .await;
        match attempt {
            Ok(()) => return Ok(()),
            Err(e) => {
                last = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Err(BackupError::new(
        "restore.record_failed",
        last.unwrap_or_default(),
    ))
}

/// At startup: drops scratch databases left by an interrupted verification or restore and
/// deletes partial backup files. Returns what it cleaned, for the log.
pub async fn recover(backups: &Backups) -> Result<Vec<String>, BackupError> {
    let mut cleaned = Vec::new();
    for _ in 0..backups.remove_partials() {
        cleaned.push("partial backup file".to_owned());
    }
    let live = backups.target.database();
    let mut admin = backups.target.connect(Some("postgres")).await?;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE $1 || '\\_verify\\_%' \
            OR datname LIKE $1 || '\\_restore\\_%' OR datname LIKE $1 || '\\_failed\\_%' \
            OR datname LIKE $1 || '\\_pre\\_restore\\_%'",
    )
    .bind(&live)
    .fetch_all(&mut admin)
    .await
    .map_err(|e| BackupError::io("backup.database", "cannot list databases", e))?;
    let _ = admin.close().await;
    for name in names {
        drop_database(backups, &name).await;
        cleaned.push(format!("database {name}"));
    }
    Ok(cleaned)
}
