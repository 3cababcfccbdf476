//! The guided restore.
//!
//! 1. Enter maintenance mode (the API answers 503 `maintenance`).
//! 2. Restore the chosen backup into a new database and check it there (checksum, decryption,
//!    pg_restore, audit chain, row counts). The live database is not touched if this fails.
//! 3. Switch: in one transaction, rename the live database away (untouched: it is the copy of the
//!    state before the restore) and the restored one into its place (PostgreSQL renames databases
//!    transactionally: either both happen or neither).
//! 4. Record the restore in the restored database's audit log; if that fails, switch back.
//! 5. Leave maintenance mode: the shop works again.
//! 6. Write the pre-restore backup from the previous database, then drop that database (if the
//!    backup fails, the database is kept as the copy and the result says so).
//!
//! A restore killed at any point leaves the live database in place under its name: before the
//! switch nothing touched it, the switch is atomic, and after it the restored database is live.
//! At the next start ([`recover`]) leftover scratch databases are dropped, and a previous database
//! left by a restore killed before step 6 finished is first written to a pre-restore backup.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::core::audit::write::{Actor, AuditedTx, Change};
use crate::core::backup::pipeline::{self, Progress, drop_database, scratch_name};
use crate::core::backup::{BackupError, Backups, Kind, Status};
use crate::core::db;
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
/// Stays whole: the guided restore's steps in their order (maintenance, checks, safety backup,
/// restore beside the live database, switch, post-restore check, switch back on failure), where
/// each step's failure must undo exactly the steps before it.
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

    // 1. Maintenance: from here the API refuses work until the restored database is live.
    let started = std::time::Instant::now();
    let mut timings = serde_json::Map::new();
    let mut since = started;
    progress.step("maintenance", json!({}));
    let maintenance = request
        .maintenance
        .map(|m| m.enter(format!("restoring backup {id}")));

    // 2. Restore and check the backup beside the live database, which nothing touches.
    progress.step("verify", json!({"backup_id": id}));
    let checked = pipeline::restore_checked(backups, &manifest, &incoming, progress).await;
    let now = backups.clock.now();
    manifest = backups.update(id, |m| m.record_verification(&checked, now))?;
    checked?;
    lap(&mut timings, "verify", &mut since);

    // A database that holds no shop yet (a new machine restoring its first backup) has nothing
    // to keep: no pre-restore backup of it.
    let live_holds_a_shop = holds_a_shop(backups).await?;

    // 3 and 4. The switch: the live database is renamed away untouched (it is the safety copy
    // until its backup is written below) and the restored one takes its name.
    progress.step("switch", json!({}));
    let pre_id = new_id();
    let previous = scratch_name(&live, "pre_restore", pre_id);
    if let Err(e) = swap(backups, &[(&live, &previous), (&incoming, &live)]).await {
        drop_database(backups, &incoming).await;
        return Err(e);
    }

    // 5. The record, in the restored chain.
    lap(&mut timings, "switch", &mut since);
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

    lap(&mut timings, "record", &mut since);
    timings.insert(
        "to_live_ms".to_owned(),
        json!(started.elapsed().as_millis()),
    );
    drop(maintenance);

    // 6. The pre-restore backup, from the previous database, now that the shop works again;
    //    then the previous database goes. If the backup fails, the database stays as the copy.
    if !live_holds_a_shop {
        drop_database(backups, &previous).await;
        timings.insert("total_ms".to_owned(), json!(started.elapsed().as_millis()));
        progress.step("done", json!({}));
        return Ok(json!({
            "backup_id": id,
            "pre_restore_backup_id": null,
            "audit_chain_head": manifest.audit_chain_head,
            "previous_database_kept": null,
            "timings": timings,
        }));
    }
    progress.step("pre_restore_backup", json!({}));
    let safety = pipeline::create_from(
        backups,
        Some(&previous),
        pre_id,
        Kind::PreRestore,
        request.job.map(|j| j.id),
        &Progress::default(),
    )
    .await;
    lap(&mut timings, "pre_restore_backup", &mut since);
    let kept_previous = match safety {
        Ok(_) => {
            drop_database(backups, &previous).await;
            None
        }
        Err(e) => {
            tracing::error!(database = %previous, error = %e,
                "the pre-restore backup failed; the previous database is kept as the copy of the state before the restore");
            Some(previous.clone())
        }
    };
    lap(&mut timings, "drop_previous", &mut since);
    timings.insert("total_ms".to_owned(), json!(started.elapsed().as_millis()));
    progress.step("done", json!({}));
    Ok(json!({
        "backup_id": id,
        "pre_restore_backup_id": pre_id,
        "audit_chain_head": manifest.audit_chain_head,
        "previous_database_kept": kept_previous,
        "timings": timings,
    }))
}

/// Does the business database hold a shop (its schema and a business)?
async fn holds_a_shop(backups: &Backups) -> Result<bool, BackupError> {
    let mut conn = backups.target.connect(None).await?;
    let cannot = |e: sqlx::Error| BackupError::io("backup.database", "cannot read the database", e);
    let schema: bool = sqlx::query_scalar("SELECT to_regclass('public.business') IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .map_err(cannot)?;
    let shop = schema
        && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM business)")
            .fetch_one(&mut conn)
            .await
            .map_err(cannot)?;
    let _ = conn.close().await;
    Ok(shop)
}

/// Records the time since `since` under `<name>_ms` and restarts the stopwatch.
fn lap(timings: &mut serde_json::Map<String, Value>, name: &str, since: &mut std::time::Instant) {
    timings.insert(format!("{name}_ms"), json!(since.elapsed().as_millis()));
    *since = std::time::Instant::now();
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
                // The pools' connections to the renamed databases were ended above.
                db::forget_connections();
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
            // The tills' cursors describe the database the backup replaced: they take a new
            // snapshot of this one.
            crate::core::sync::new_epoch(&mut tx).await?;
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
        if name.starts_with(&format!("{live}_pre_restore_")) {
            // The state before an interrupted restore: keep it as a backup before it goes.
            let id = new_id();
            let saved = pipeline::create_from(
                backups,
                Some(&name),
                id,
                Kind::PreRestore,
                None,
                &Progress::default(),
            )
            .await;
            if let Err(e) = saved {
                tracing::error!(database = %name, error = %e, "cannot back up the database left by an interrupted restore; keeping it");
                continue;
            }
            cleaned.push(format!(
                "database {name} (saved as pre-restore backup {id})"
            ));
        } else {
            cleaned.push(format!("database {name}"));
        }
        drop_database(backups, &name).await;
    }
    Ok(cleaned)
}
