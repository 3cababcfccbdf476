//! Embedded SQL migrations (`migrations/*.sql`, compiled into the binary).
//!
//! Released migrations are never edited: one whose checksum differs from the applied copy is
//! refused with a message that says so, rather than silently diverging schemas.

use sqlx::migrate::{MigrateError, Migration, Migrator};
use sqlx::{Acquire, PgConnection, PgPool};

/// Every migration of this release, in order.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// One migration as seen from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub version: i64,
    pub description: String,
    pub state: MigrationState,
}

/// Where a migration stands in this database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationState {
    Applied,
    Pending,
    /// Applied, but the embedded SQL differs from what was applied.
    Changed,
    /// Started and failed; the database needs attention before anything else runs.
    Failed,
    /// Applied by a newer plugpos: this binary does not know it.
    Unknown,
}

impl std::fmt::Display for MigrationState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MigrationState::Applied => "applied",
            MigrationState::Pending => "pending",
            MigrationState::Changed => "CHANGED after it was applied",
            MigrationState::Failed => "FAILED",
            MigrationState::Unknown => "unknown to this version",
        })
    }
}

/// The schema is not what this binary expects.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "migration {0} was changed after it was applied to this database; released migrations must never be \
         edited (restore the original file or add a new migration)"
    )]
    Changed(i64),
    #[error(
        "migration {0} failed earlier and left the database dirty; restore a backup or repair it by hand"
    )]
    Failed(i64),
    #[error(
        "the database has migration {0}, which this plugpos does not know (was it upgraded by a newer version?)"
    )]
    Unknown(i64),
    #[error("{0} migration(s) pending; run `plugpos migrate`")]
    Pending(usize),
    #[error("cannot migrate the database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot migrate the database: {0}")]
    Migrate(MigrateError),
}

impl From<MigrateError> for SchemaError {
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::VersionMismatch(v) => SchemaError::Changed(v),
            MigrateError::VersionMissing(v) => SchemaError::Unknown(v),
            MigrateError::Dirty(v) => SchemaError::Failed(v),
            MigrateError::Execute(e) => SchemaError::Database(e),
            other => SchemaError::Migrate(other),
        }
    }
}

/// The newest migration this binary embeds (its schema version).
pub fn embedded_schema_version() -> i64 {
    up_migrations().map(|m| m.version).max().unwrap_or(0)
}

fn up_migrations() -> impl Iterator<Item = &'static Migration> {
    MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
}

/// Every embedded migration and every applied one, with its state, ordered by version.
pub async fn status(pool: &PgPool) -> Result<Vec<MigrationStatus>, SchemaError> {
    let mut conn = pool.acquire().await?;
    status_on(&mut conn).await
}

async fn status_on(conn: &mut PgConnection) -> Result<Vec<MigrationStatus>, SchemaError> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    let applied: Vec<(i64, String, bool, Vec<u8>)> = if exists {
        sqlx::query_as(
            "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await?
    } else {
        Vec::new()
    };
    let mut out: Vec<MigrationStatus> = up_migrations()
        .map(|m| {
            let state = match applied.iter().find(|a| a.0 == m.version) {
                None => MigrationState::Pending,
                Some((_, _, false, _)) => MigrationState::Failed,
                Some((_, _, true, checksum)) if checksum.as_slice() != &*m.checksum => {
                    MigrationState::Changed
                }
                Some(_) => MigrationState::Applied,
            };
            MigrationStatus {
                version: m.version,
                description: m.description.to_string(),
                state,
            }
        })
        .collect();
    for (version, description, _, _) in &applied {
        if !MIGRATOR.version_exists(*version) {
            out.push(MigrationStatus {
                version: *version,
                description: description.clone(),
                state: MigrationState::Unknown,
            });
        }
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

/// Fails unless every migration is applied unchanged (a startup and readiness check).
pub async fn check_current(pool: &PgPool) -> Result<(), SchemaError> {
    let status = status(pool).await?;
    refuse_broken(&status)?;
    let pending = status
        .iter()
        .filter(|m| m.state == MigrationState::Pending)
        .count();
    if pending > 0 {
        return Err(SchemaError::Pending(pending));
    }
    Ok(())
}

fn refuse_broken(status: &[MigrationStatus]) -> Result<(), SchemaError> {
    for m in status {
        match m.state {
            MigrationState::Changed => return Err(SchemaError::Changed(m.version)),
            MigrationState::Failed => return Err(SchemaError::Failed(m.version)),
            MigrationState::Unknown => return Err(SchemaError::Unknown(m.version)),
            MigrationState::Applied | MigrationState::Pending => {}
        }
    }
    Ok(())
}

/// Applies the pending migrations in one transaction, so a migration that fails leaves the
/// schema exactly as it was before the first of them (an upgrade that brings several migrations
/// is all or nothing). Returns the versions applied. A migration marked `-- no-transaction`
/// (none so far: PostgreSQL refuses `CREATE INDEX CONCURRENTLY` inside a transaction) runs alone
/// between the batches; the pre-upgrade backup covers it.
pub async fn apply(pool: &PgPool) -> Result<Vec<i64>, SchemaError> {
    run_pending(pool, Outcome::Commit).await
}

/// Applies the pending migrations inside one transaction and rolls it back, proving they would
/// apply without changing anything. Returns the versions that were tried.
pub async fn dry_run(pool: &PgPool) -> Result<Vec<i64>, SchemaError> {
    run_pending(pool, Outcome::RollBack).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Commit,
    RollBack,
}

/// Serializes plugpos processes migrating the same database (a second one waits, then finds
/// nothing pending). Any constant: it is only ever taken here.
const MIGRATE_LOCK: i64 = 0x0070_6c75_6770_6f73;

async fn run_pending(pool: &PgPool, outcome: Outcome) -> Result<Vec<i64>, SchemaError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
             version BIGINT PRIMARY KEY,
             description TEXT NOT NULL,
             installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
             success BOOLEAN NOT NULL,
             checksum BYTEA NOT NULL,
             execution_time BIGINT NOT NULL
         )",
    )
    .execute(&mut *tx)
    .await?;
    // Read under the lock: another process may have migrated while this one waited.
    let before = status_on(&mut tx).await?;
    refuse_broken(&before)?;
    let pending: Vec<&Migration> = up_migrations()
        .filter(|m| {
            before
                .iter()
                .any(|s| s.version == m.version && s.state == MigrationState::Pending)
        })
        .collect();
    for migration in &pending {
        if migration.no_tx && outcome == Outcome::Commit {
            // Everything before it is committed first; it runs on its own.
            tx.commit().await?;
            MIGRATOR.run(pool).await?;
            return Ok(pending.iter().map(|m| m.version).collect());
        }
        let started = std::time::Instant::now();
        sqlx::raw_sql(migration.sql.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                SchemaError::Migrate(MigrateError::ExecuteMigration(e, migration.version))
            })?;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, $2, TRUE, $3, $4)",
        )
        .bind(migration.version)
        .bind(&*migration.description)
        .bind(&*migration.checksum)
        .bind(i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
    }
    match outcome {
        Outcome::Commit => tx.commit().await?,
        Outcome::RollBack => tx.rollback().await?,
    }
    Ok(pending.iter().map(|m| m.version).collect())
}
