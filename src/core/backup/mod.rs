//! Backups: `pg_dump` (custom format, uncompressed) -> zstd -> age, written atomically into
//! `<data_dir>/backups` with a JSON manifest beside each file, verified by restoring into a
//! scratch database; and the guided restore (see [`restore`]).
//!
//! The manifests on disk, not a table, are the record of backups: a restore replaces the
//! database, and the list of backups must survive it. A file is only ever named
//! `<id>.pgdump.zst.age` once it is complete and fsynced (it is written as `<id>.partial` first),
//! and its manifest says `valid` only after a verification restored it and checked it. Anything
//! else (`pending`, `invalid`, `failed`) is never offered as restorable.
//!
//! Standard tools restore a file: `age -d -i key.txt FILE | zstd -d | pg_restore -d DB`.

pub mod http;
pub mod jobs;
pub mod key;
pub mod pipeline;
pub mod restore;
pub mod targets;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::core::audit::verify::Head;
use crate::core::data_dir::{DataDir, write_private_file};
use crate::core::postgres::PgBinaries;
use crate::shared::clock::Clock;

/// The manifest format written by this version.
pub const FORMAT: &str = "plugpos-backup/1";
/// The encrypted file's suffix.
pub const FILE_SUFFIX: &str = ".pgdump.zst.age";
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
const PARTIAL_SUFFIX: &str = ".partial";

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Full,
    Snapshot,
    PreUpgrade,
    PreRestore,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Snapshot => "snapshot",
            Kind::PreUpgrade => "pre-upgrade",
            Kind::PreRestore => "pre-restore",
        }
    }

    pub const ALL: [Kind; 4] = [
        Kind::Full,
        Kind::Snapshot,
        Kind::PreUpgrade,
        Kind::PreRestore,
    ];

    /// Backups of this kind kept by default (setting `backup.retention.<kind>` overrides).
    pub fn default_retention(self) -> usize {
        match self {
            Kind::Full => 7,
            Kind::Snapshot => 12,
            Kind::PreUpgrade | Kind::PreRestore => 3,
        }
    }
}

impl FromStr for Kind {
    type Err = ();
    fn from_str(s: &str) -> Result<Kind, ()> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// Where a backup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Written, not verified yet.
    Pending,
    /// Restored into a scratch database and checked: restorable.
    Valid,
    /// Verification failed (see `error`): never restorable.
    Invalid,
    /// Could not be taken (see `error`); there is no file.
    Failed,
}

/// A failure with a stable code (`backup.checksum_mismatch`...) and a sentence for the admin.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, thiserror::Error,
)]
#[error("{message} ({code})")]
pub struct BackupError {
    pub code: String,
    pub message: String,
}

impl BackupError {
    pub fn new(code: &str, message: impl Into<String>) -> BackupError {
        BackupError {
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn io(code: &str, what: &str, e: impl std::fmt::Display) -> BackupError {
        BackupError::new(code, format!("{what}: {e}"))
    }
}

/// Everything known about one backup; stored as `<id>.manifest.json` beside the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// `plugpos-backup/1`.
    pub format: String,
    pub id: Uuid,
    pub kind: Kind,
    /// The encrypted file's name inside the backups directory.
    pub file: String,
    pub app_version: String,
    /// The newest migration applied to the dumped database.
    pub schema_version: i64,
    /// The database that was dumped.
    pub database: String,
    pub created_at: DateTime<Utc>,
    /// Size of the encrypted file.
    pub size_bytes: u64,
    /// Hex SHA-256 of the encrypted file.
    pub sha256: String,
    /// The last chained audit record in the dump.
    pub audit_chain_head: Option<Head>,
    /// Rows per table in the dump (the snapshot pg_dump used).
    pub row_counts: BTreeMap<String, i64>,
    /// The age recipient the file is encrypted to.
    pub recipient: String,
    pub status: Status,
    pub verified_at: Option<DateTime<Utc>>,
    pub error: Option<BackupError>,
    /// The job that took it, if a job did.
    pub job_id: Option<Uuid>,
    /// Its copies at the backup targets, by target name (absent in manifests of older versions
    /// and in the copies at the targets themselves).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub copies: BTreeMap<String, targets::Copy>,
}

impl Manifest {
    /// Records the outcome of a verification (a restore into a scratch or incoming database and
    /// its checks): `valid`, or `invalid` with the reason.
    pub fn record_verification(&mut self, outcome: &Result<(), BackupError>, at: DateTime<Utc>) {
        self.status = if outcome.is_ok() {
            Status::Valid
        } else {
            Status::Invalid
        };
        self.error = outcome.as_ref().err().cloned();
        self.verified_at = Some(at);
    }
}

/// A backup as `GET /api/v1/backups` lists it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupView {
    pub id: Uuid,
    pub kind: Kind,
    pub created_at: DateTime<Utc>,
    pub size_bytes: u64,
    pub sha256: String,
    pub status: Status,
    pub verified_at: Option<DateTime<Utc>>,
    pub app_version: String,
    pub schema_version: i64,
    pub error: Option<BackupError>,
    /// Its copies at the backup targets, by target name.
    pub copies: BTreeMap<String, targets::Copy>,
}

impl From<&Manifest> for BackupView {
    fn from(m: &Manifest) -> BackupView {
        BackupView {
            id: m.id,
            kind: m.kind,
            created_at: m.created_at,
            size_bytes: m.size_bytes,
            sha256: m.sha256.clone(),
            status: m.status,
            verified_at: m.verified_at,
            app_version: m.app_version.clone(),
            schema_version: m.schema_version,
            error: m.error.clone(),
            copies: m.copies.clone(),
        }
    }
}

/// How to reach the business database with enough rights to dump, create, rename and drop
/// databases: a libpq URL (the managed cluster's superuser over its socket, or
/// `database.owner_url` / `database.url` in hosted mode).
#[derive(Clone)]
pub struct DbTarget {
    url: secrecy::SecretString,
}

impl std::fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbTarget(..)")
    }
}

impl DbTarget {
    pub fn new(url: impl Into<String>) -> DbTarget {
        DbTarget {
            url: secrecy::SecretString::from(url.into()),
        }
    }

    /// The managed cluster's superuser over its socket.
    pub fn managed(socket_dir: &Path, database: &str) -> DbTarget {
        DbTarget::new(format!(
            "postgresql://{}@localhost/{database}?host={}",
            crate::core::postgres::SUPERUSER,
            socket_dir.display()
        ))
    }

    fn raw(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.url)
    }

    /// The libpq URL without its password, and the password: pg_dump and pg_restore get the URL
    /// as `--dbname` (visible in `ps`) and the password as `PGPASSWORD` (not visible to others).
    pub fn libpq_parts(&self, database: Option<&str>) -> (String, Option<String>) {
        let url = self.libpq_url(database);
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return (url, None);
        };
        let authority_end = url[scheme_end..]
            .find(['/', '?'])
            .map_or(url.len(), |i| scheme_end + i);
        let Some(at) = url[scheme_end..authority_end]
            .rfind('@')
            .map(|i| scheme_end + i)
        else {
            return (url, None);
        };
        let Some(colon) = url[scheme_end..at].find(':').map(|i| scheme_end + i) else {
            return (url, None);
        };
        let password = percent_decode(&url[colon + 1..at]);
        (format!("{}{}", &url[..colon], &url[at..]), Some(password))
    }

    /// The libpq URL, pointed at `database` (the business database when `None`).
    pub fn libpq_url(&self, database: Option<&str>) -> String {
        let url = self.raw();
        match database {
            None => url.to_owned(),
            Some(db) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}dbname={db}")
            }
        }
    }

    /// sqlx connection options for `database` (the business database when `None`).
    pub fn options(&self, database: Option<&str>) -> Result<PgConnectOptions, BackupError> {
        let options = PgConnectOptions::from_str(self.raw())
            .map_err(|_| BackupError::new("backup.database", "the database URL is not valid"))?
            .application_name("plugpos-backup")
            .disable_statement_logging();
        Ok(match database {
            Some(db) => options.database(db),
            None => options,
        })
    }

    /// The business database's name.
    pub fn database(&self) -> String {
        self.options(None)
            .ok()
            .and_then(|o| o.get_database().map(str::to_owned))
            .unwrap_or_else(|| crate::core::postgres::DATABASE_NAME.to_owned())
    }

    /// A connection to `database` (the maintenance database `postgres` for CREATE/DROP/RENAME).
    pub async fn connect(&self, database: Option<&str>) -> Result<PgConnection, BackupError> {
        PgConnection::connect_with(&self.options(database)?)
            .await
            .map_err(|e| BackupError::io("backup.database", "cannot connect to the database", e))
    }
}

/// `%XX` escapes of a URL component decoded (invalid ones are kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The manifests' lock, held until dropped (see [`Backups::update`]).
struct ManifestLock {
    _file: nix::fcntl::Flock<fs::File>,
    _process: std::sync::MutexGuard<'static, ()>,
}

/// The tools and places a backup needs.
#[derive(Debug, Clone)]
pub struct Backups {
    pub dir: PathBuf,
    pub keys: PathBuf,
    pub target: DbTarget,
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    pub clock: Clock,
}

impl Backups {
    /// Backups of the database at `target`, with PostgreSQL's client programs found like its
    /// server programs (`database.pg_bin_dir`, PATH, `/usr/lib/postgresql/<ver>/bin`).
    pub fn new(
        data_dir: &DataDir,
        target: DbTarget,
        pg_bin_dir: Option<&Path>,
        clock: Clock,
    ) -> Backups {
        let path = std::env::var("PATH").ok();
        let dir = PgBinaries::find(
            pg_bin_dir,
            path.as_deref(),
            Path::new("/usr/lib/postgresql"),
        )
        .ok()
        .and_then(|b| b.postgres.parent().map(Path::to_owned));
        let tool = |name: &str| match (&dir, pg_bin_dir) {
            (_, Some(pinned)) => pinned.join(name),
            (Some(d), None) if d.join(name).exists() => d.join(name),
            _ => PathBuf::from(name),
        };
        Backups {
            dir: data_dir.root().join("backups"),
            keys: data_dir.keys(),
            target,
            pg_dump: tool("pg_dump"),
            pg_restore: tool("pg_restore"),
            clock,
        }
    }

    /// The encrypted file of backup `id`.
    pub fn file_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}{FILE_SUFFIX}"))
    }

    fn manifest_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}{MANIFEST_SUFFIX}"))
    }

    fn partial_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}{PARTIAL_SUFFIX}"))
    }

    /// Writes (replaces atomically) the manifest of `manifest.id`.
    pub fn save(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| {
            BackupError::io("backup.manifest_invalid", "cannot encode the manifest", e)
        })?;
        write_private_file(&self.manifest_path(manifest.id), &json).map_err(|e| {
            BackupError::io(
                "backup.write_failed",
                "cannot write the manifest",
                format!("{e:#}"),
            )
        })
    }

    /// Holds the manifests still while one is read, changed and written, or deleted: against
    /// this process's other jobs (a mutex) and other plugpos commands on the same data directory
    /// (an advisory lock on `backups/.manifests.lock`).
    fn lock(&self) -> Result<ManifestLock, BackupError> {
        static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let process = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        let cannot = |e: &dyn std::fmt::Display| {
            BackupError::io("backup.write_failed", "cannot lock the manifests", e)
        };
        fs::create_dir_all(&self.dir).map_err(|e| cannot(&e))?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".manifests.lock"))
            .map_err(|e| cannot(&e))?;
        let file = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| cannot(&e))?;
        Ok(ManifestLock {
            _file: file,
            _process: process,
        })
    }

    /// Changes the manifest of backup `id` with `change`, under the manifests' lock, so that copy
    /// jobs of several targets, a verification and a CLI command never undo each other's records
    /// (and a manifest deleted meanwhile is not written back). Returns it changed.
    pub fn update(
        &self,
        id: Uuid,
        change: impl FnOnce(&mut Manifest),
    ) -> Result<Manifest, BackupError> {
        let _held = self.lock()?;
        let mut manifest = self.load(id)?;
        change(&mut manifest);
        self.save(&manifest)?;
        Ok(manifest)
    }

    /// Writes `manifest` in place of whatever is recorded for its backup, under the lock.
    pub fn replace(&self, manifest: &Manifest) -> Result<(), BackupError> {
        let _held = self.lock()?;
        self.save(manifest)
    }

    /// The manifest of backup `id`.
    pub fn load(&self, id: Uuid) -> Result<Manifest, BackupError> {
        let path = self.manifest_path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::new(
                    "backup.not_found",
                    format!("there is no backup {id}"),
                ));
            }
            Err(e) => {
                return Err(BackupError::io(
                    "backup.manifest_invalid",
                    "cannot read the manifest",
                    e,
                ));
            }
        };
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            BackupError::io(
                "backup.manifest_invalid",
                "the manifest is not a plugpos backup manifest",
                e,
            )
        })?;
        if manifest.id != id || manifest.format != FORMAT {
            return Err(BackupError::new(
                "backup.manifest_invalid",
                format!("the manifest of {id} describes another backup or format"),
            ));
        }
        Ok(manifest)
    }

    /// Every backup with a readable manifest, newest first. Partial files have no manifest and
    /// never appear.
    pub fn list(&self) -> Vec<Manifest> {
        let mut out: Vec<Manifest> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let id = Uuid::parse_str(name.strip_suffix(MANIFEST_SUFFIX)?).ok()?;
                self.load(id).ok()
            })
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        out
    }

    /// Deletes leftovers of interrupted backups (`*.partial`), returning how many.
    pub fn remove_partials(&self) -> usize {
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().ends_with(PARTIAL_SUFFIX)
                && fs::remove_file(entry.path()).is_ok()
            {
                tracing::warn!(file = %entry.path().display(), "removed the partial file of an interrupted backup");
                removed += 1;
            }
        }
        removed
    }

    /// Deletes backup `id` (file and manifest), under the manifests' lock.
    pub fn delete(&self, id: Uuid) -> Result<(), BackupError> {
        let _held = self.lock()?;
        for path in [
            self.file_path(id),
            self.manifest_path(id),
            self.partial_path(id),
        ] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BackupError::io(
                        "backup.delete_failed",
                        &format!("cannot delete {}", path.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Applies retention: per kind, the newest `keep(kind)` valid backups stay; older backups of
    /// that kind (any status) are deleted, and so are failed or invalid ones older than the
    /// newest kept one. Pending backups are never touched. Returns the deleted ids.
    pub fn apply_retention(&self, keep: impl Fn(Kind) -> usize) -> Result<Vec<Uuid>, BackupError> {
        let all = self.list();
        let mut deleted = Vec::new();
        for kind in Kind::ALL {
            let of_kind: Vec<&Manifest> = all.iter().filter(|m| m.kind == kind).collect();
            let valid: Vec<&Manifest> = of_kind
                .iter()
                .copied()
                .filter(|m| m.status == Status::Valid)
                .collect();
            let kept = &valid[..keep(kind).min(valid.len())];
            let Some(oldest_kept) = kept.last() else {
                continue;
            };
            for m in &of_kind {
                let surplus = m.status == Status::Valid && !kept.iter().any(|k| k.id == m.id);
                let old_failure = matches!(m.status, Status::Invalid | Status::Failed)
                    && m.created_at < oldest_kept.created_at;
                if surplus || old_failure {
                    self.delete(m.id)?;
                    deleted.push(m.id);
                }
            }
        }
        Ok(deleted)
    }
}

/// The retention count of `kind` from the settings (`backup.retention.<kind>`), else the default.
pub async fn retention_counts(
    conn: &mut PgConnection,
) -> Result<impl Fn(Kind) -> usize + use<>, sqlx::Error> {
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT key, value FROM settings WHERE key LIKE 'backup.retention.%'")
            .fetch_all(conn)
            .await?;
    let counts: BTreeMap<String, usize> = rows
        .into_iter()
        .filter_map(|(k, v)| {
            let n = v.as_u64().or_else(|| v.as_str()?.parse().ok())?;
            Some((
                k.trim_start_matches("backup.retention.").replace('_', "-"),
                usize::try_from(n).ok()?.max(1),
            ))
        })
        .collect();
    Ok(move |kind: Kind| {
        counts
            .get(kind.as_str())
            .copied()
            .unwrap_or(kind.default_retention())
    })
}

impl crate::core::state::AppState {
    /// Backups of this instance's database into `<data_dir>/backups`.
    pub fn backups(&self) -> Backups {
        Backups::new(
            self.data_dir(),
            self.part::<DbTarget>().clone(),
            self.config().database.pg_bin_dir.as_deref(),
            self.clock().clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_at_other_databases_without_losing_parameters() {
        let t = DbTarget::new("postgresql://postgres@localhost/plugpos?host=/run/pg");
        assert_eq!(
            t.libpq_url(Some("postgres")),
            "postgresql://postgres@localhost/plugpos?host=/run/pg&dbname=postgres"
        );
        assert_eq!(t.database(), "plugpos");
        let t = DbTarget::new("postgres://u:secret@db.example/shop");
        assert_eq!(
            t.libpq_url(Some("x")),
            "postgres://u:secret@db.example/shop?dbname=x"
        );
        assert_eq!(format!("{t:?}"), "DbTarget(..)");
        assert_eq!(
            t.libpq_parts(Some("x")),
            (
                "postgres://u@db.example/shop?dbname=x".to_owned(),
                Some("secret".to_owned())
            )
        );
        let t = DbTarget::new("postgresql://shop%40x:p%3Ass%2Fw@db:5433/shop?sslmode=require");
        assert_eq!(
            t.libpq_parts(None),
            (
                "postgresql://shop%40x@db:5433/shop?sslmode=require".to_owned(),
                Some("p:ss/w".to_owned())
            )
        );
        let managed = DbTarget::new("postgresql://postgres@localhost/plugpos?host=/run/pg");
        assert_eq!(managed.libpq_parts(None).1, None);
    }

    fn manifest(kind: Kind, status: Status, minutes_ago: i64) -> Manifest {
        let id = Uuid::now_v7();
        Manifest {
            format: FORMAT.to_owned(),
            id,
            kind,
            file: format!("{id}{FILE_SUFFIX}"),
            app_version: "0.1.0".to_owned(),
            schema_version: 11,
            database: "plugpos".to_owned(),
            created_at: crate::shared::clock::Clock::system().now()
                - chrono::Duration::minutes(minutes_ago),
            size_bytes: 0,
            sha256: String::new(),
            audit_chain_head: None,
            row_counts: BTreeMap::new(),
            recipient: String::new(),
            status,
            verified_at: None,
            error: None,
            job_id: None,
            copies: BTreeMap::new(),
        }
    }

    #[test]
    fn retention_keeps_the_newest_valid_backups_per_kind() {
        let dir = tempfile::tempdir().unwrap();
        let backups = Backups {
            dir: dir.path().to_owned(),
            keys: dir.path().to_owned(),
            target: DbTarget::new("postgresql://postgres@localhost/plugpos"),
            pg_dump: PathBuf::from("pg_dump"),
            pg_restore: PathBuf::from("pg_restore"),
            clock: Clock::system(),
        };
        let full: Vec<Manifest> = (0..4)
            .map(|i| manifest(Kind::Full, Status::Valid, i * 60))
            .collect();
        let old_failure = manifest(Kind::Full, Status::Failed, 500);
        let recent_failure = manifest(Kind::Full, Status::Invalid, 30);
        let pending = manifest(Kind::Full, Status::Pending, 900);
        let snapshot = manifest(Kind::Snapshot, Status::Valid, 1000);
        for m in full
            .iter()
            .chain([&old_failure, &recent_failure, &pending, &snapshot])
        {
            backups.save(m).unwrap();
            std::fs::write(backups.file_path(m.id), b"x").unwrap();
        }
        let deleted = backups
            .apply_retention(|k| if k == Kind::Full { 2 } else { 5 })
            .unwrap();
        let mut expected = vec![full[2].id, full[3].id, old_failure.id];
        expected.sort();
        let mut deleted_sorted = deleted.clone();
        deleted_sorted.sort();
        assert_eq!(deleted_sorted, expected);
        let left: Vec<Uuid> = backups.list().iter().map(|m| m.id).collect();
        for kept in [
            full[0].id,
            full[1].id,
            recent_failure.id,
            pending.id,
            snapshot.id,
        ] {
            assert!(left.contains(&kept));
        }
        assert!(
            !backups.file_path(full[3].id).exists(),
            "the file goes with the manifest"
        );
    }

    #[test]
    fn kinds_round_trip() {
        assert_eq!(
            Kind::ALL.map(Kind::as_str),
            crate::core::config::backup_target::KINDS,
            "the targets' kinds are these"
        );
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
    }
}
