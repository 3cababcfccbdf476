//! Taking a backup and checking one by restoring it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

use crate::core::audit::verify::{self, Head};
use crate::core::backup::{BackupError, Backups, FORMAT, Kind, Manifest, Status, key};
use crate::core::db::lazy_pool;

/// Chunk size of every copy in the pipeline.
const CHUNK: usize = 1 << 20;
/// How often (in bytes) a long copy reports progress.
const REPORT_EVERY: u64 = 64 << 20;

/// Where progress goes (a job's progress, a terminal), if anywhere.
#[derive(Debug, Clone, Default)]
pub struct Progress(Option<UnboundedSender<Value>>);

impl Progress {
    pub fn new(tx: UnboundedSender<Value>) -> Progress {
        Progress(Some(tx))
    }

    /// Reports reaching `step`, with details.
    pub fn step(&self, step: &str, mut details: Value) {
        if let Some(tx) = &self.0 {
            if let Some(map) = details.as_object_mut() {
                map.insert("step".to_owned(), Value::from(step));
            } else {
                details = json!({ "step": step });
            }
            let _ = tx.send(details);
        }
    }
}

/// Takes backup `id` of `kind`: dumps the database in one consistent snapshot, compresses,
/// encrypts and writes it atomically, then writes its manifest as `pending`. Running it again
/// for an id that already has a file returns the existing manifest (a retried job does not take
/// a second backup). On failure the manifest says `failed` with the reason, and no file and no
/// other backup is touched.
pub async fn create(
    backups: &Backups,
    id: Uuid,
    kind: Kind,
    job_id: Option<Uuid>,
    progress: &Progress,
) -> Result<Manifest, BackupError> {
    create_from(backups, None, id, kind, job_id, progress).await
}

/// Like [`create`], dumping `database` instead of the business database (the restore dumps the
/// previous database it switched away from).
pub async fn create_from(
    backups: &Backups,
    database: Option<&str>,
    id: Uuid,
    kind: Kind,
    job_id: Option<Uuid>,
    progress: &Progress,
) -> Result<Manifest, BackupError> {
    if let Ok(existing) = backups.load(id)
        && existing.status != Status::Failed
    {
        return Ok(existing);
    }
    let now = backups.clock.now();
    let mut manifest = Manifest {
        format: FORMAT.to_owned(),
        id,
        kind,
        file: format!("{id}{}", super::FILE_SUFFIX),
        app_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_version: 0,
        database: backups.target.database(),
        created_at: now,
        size_bytes: 0,
        sha256: String::new(),
        audit_chain_head: None,
        row_counts: BTreeMap::new(),
        recipient: String::new(),
        status: Status::Pending,
        verified_at: None,
        error: None,
        job_id,
        copies: BTreeMap::new(),
    };
    match dump(backups, database, &mut manifest, progress).await {
        Ok(()) => {
            backups.save(&manifest)?;
            Ok(manifest)
        }
        Err(e) => {
            let _ = fs::remove_file(backups.partial_path(id));
            manifest.status = Status::Failed;
            manifest.error = Some(e.clone());
            backups.save(&manifest)?;
            Err(e)
        }
    }
}

async fn dump(
    backups: &Backups,
    database: Option<&str>,
    manifest: &mut Manifest,
    progress: &Progress,
) -> Result<(), BackupError> {
    let identity = key::identity(&backups.keys)
        .map_err(|e| BackupError::new("backup.no_key", format!("{e:#}")))?;
    let recipient = identity.to_public();
    manifest.recipient = recipient.to_string();
    fs::create_dir_all(&backups.dir).map_err(|e| {
        BackupError::io(
            "backup.write_failed",
            "cannot create the backups directory",
            e,
        )
    })?;

    // One snapshot for the facts in the manifest and for pg_dump (--snapshot): the row counts
    // and the chain head describe exactly what is in the file.
    progress.step("snapshot", json!({}));
    let mut conn = backups.target.connect(database).await?;
    let db = |e: sqlx::Error| BackupError::io("backup.database", "cannot read the database", e);
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await
        .map_err(db)?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await
        .map_err(db)?;
    manifest.row_counts = row_counts(&mut conn).await.map_err(db)?;
    manifest.audit_chain_head = chain_head(&mut conn).await.map_err(db)?;
    manifest.schema_version =
        sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut conn)
            .await
            .map_err(db)?;

    progress.step("dump", json!({}));
    let partial = backups.partial_path(manifest.id);
    let pg_dump = backups.pg_dump.clone();
    let (url, password) = backups.target.libpq_parts(database);
    let report = progress.clone();
    let written = tokio::task::spawn_blocking(move || {
        dump_encrypted(
            &pg_dump,
            (&url, password.as_deref()),
            &snapshot,
            &partial,
            &recipient,
            &report,
        )
    })
    .await
    .map_err(|e| BackupError::io("backup.dump_failed", "the backup task failed", e))?;
    // The snapshot must stay open until pg_dump has taken it; it has, once it finished.
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
    let _ = conn.close().await;
    let (size, sha256) = written?;

    let file = backups.file_path(manifest.id);
    fs::rename(backups.partial_path(manifest.id), &file).map_err(|e| {
        BackupError::io(
            "backup.write_failed",
            "cannot move the backup into place",
            e,
        )
    })?;
    sync_dir(&backups.dir)?;
    manifest.size_bytes = size;
    manifest.sha256 = sha256;
    progress.step("written", json!({"size_bytes": size}));
    Ok(())
}

/// Rows per table of the public schema.
async fn row_counts(conn: &mut PgConnection) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(&mut *conn)
    .await?;
    if tables.is_empty() {
        return Ok(BTreeMap::new());
    }
    let sql = tables
        .iter()
        .map(|t| {
            let quoted = format!("\"{}\"", t.replace('"', "\"\""));
            format!(
                "SELECT '{}'::text, count(*) FROM {quoted}",
                t.replace('\'', "''")
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().collect())
}

async fn chain_head(conn: &mut PgConnection) -> Result<Option<Head>, sqlx::Error> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(seq, hash)| Head {
        seq,
        hash: hex::encode(hash),
    }))
}

/// Counts bytes and hashes what passes through.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `pg_dump -Fc -Z0 | zstd | age -r RECIPIENT > partial`, fsynced. Returns size and sha256.
/// Stays whole: the child process, the compressing and encrypting writers and the checksum are
/// started, fed and finished together, and each error must reap the child before it returns.
fn dump_encrypted(
    pg_dump: &Path,
    (url, password): (&str, Option<&str>),
    snapshot: &str,
    partial: &Path,
    recipient: &age::x25519::Recipient,
    progress: &Progress,
) -> Result<(u64, String), BackupError> {
    let mut child = pg_tool(pg_dump, url, password)
        .args(["--format=custom", "--compress=0"])
        .arg(format!("--snapshot={snapshot}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            BackupError::io(
                "backup.dump_failed",
                &format!("cannot run {}", pg_dump.display()),
                e,
            )
        })?;
    let stderr = collect_stderr(child.stderr.take());
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| BackupError::new("backup.dump_failed", "pg_dump has no output"))?;
    let written = (|| -> Result<(u64, String), BackupError> {
        let write_err = |e: io::Error| {
            BackupError::io("backup.write_failed", "cannot write the backup file", e)
        };
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(partial)
            .map_err(write_err)?;
        let hashing = Hashing {
            inner: BufWriter::with_capacity(CHUNK, file),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
                .map_err(|e| BackupError::io("backup.encrypt_failed", "cannot encrypt", e))?;
        let encrypted = encryptor.wrap_output(hashing).map_err(write_err)?;
        let mut compressed = zstd::Encoder::new(encrypted, 3).map_err(write_err)?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        let mut next_report = REPORT_EVERY;
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(BackupError::io(
                        "backup.dump_failed",
                        "cannot read pg_dump's output",
                        e,
                    ));
                }
            };
            compressed.write_all(&buf[..n]).map_err(write_err)?;
            total += n as u64;
            if total >= next_report {
                progress.step("dump", json!({"dumped_bytes": total}));
                next_report += REPORT_EVERY;
            }
        }
        let encrypted = compressed.finish().map_err(write_err)?;
        let mut hashing = encrypted.finish().map_err(write_err)?;
        hashing.flush().map_err(write_err)?;
        let file = hashing
            .inner
            .into_inner()
            .map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        Ok((hashing.bytes, hex::encode(hashing.hasher.finalize())))
    })();
    if written.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| BackupError::io("backup.dump_failed", "cannot wait for pg_dump", e))?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        // pg_dump's own reason comes first: a failed write is usually its consequence or cause.
        if let Err(e) = &written
            && e.code == "backup.write_failed"
        {
            return Err(e.clone());
        }
        return Err(BackupError::new(
            "backup.dump_failed",
            format!("pg_dump failed ({status}): {}", last_lines(&stderr)),
        ));
    }
    written
}

/// pg_dump or pg_restore on `url` (password-less, visible in `ps`), the password in the
/// environment, never prompting.
fn pg_tool(program: &Path, url: &str, password: Option<&str>) -> Command {
    let mut command = Command::new(program);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.arg("--no-password").arg(format!("--dbname={url}"));
    command
}

fn collect_stderr(stderr: Option<std::process::ChildStderr>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = s.read_to_string(&mut text);
        }
        text
    })
}

fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(3)..];
    if tail.is_empty() {
        "no message".to_owned()
    } else {
        tail.join(" / ")
    }
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| {
        BackupError::io(
            "backup.write_failed",
            "cannot sync the backups directory",
            e,
        )
    })
}

/// Verifies backup `id`: checksum, decrypt, decompress, restore into a scratch database, verify
/// the audit chain there and compare the row counts with the manifest, drop the scratch
/// database. Records the outcome in the manifest (`valid` or `invalid` with the reason).
pub async fn verify(
    backups: &Backups,
    id: Uuid,
    progress: &Progress,
) -> Result<Manifest, BackupError> {
    let manifest = backups.load(id)?;
    if manifest.status == Status::Failed {
        return Err(manifest.error.clone().unwrap_or_else(|| {
            BackupError::new("backup.failed", "this backup was never completed")
        }));
    }
    let scratch = scratch_name(&backups.target.database(), "verify", id);
    let outcome = restore_checked(backups, &manifest, &scratch, progress).await;
    drop_database(backups, &scratch).await;
    let now = backups.clock.now();
    let manifest = backups.update(id, |m| m.record_verification(&outcome, now))?;
    outcome.map(|()| manifest)
}

/// A database name next to the business database's, for a scratch or incoming restore.
pub fn scratch_name(live: &str, purpose: &str, id: Uuid) -> String {
    let short = &id.simple().to_string()[..12];
    // PostgreSQL names are at most 63 bytes.
    let base: String = live
        .chars()
        .take(63 - purpose.len() - short.len() - 2)
        .collect();
    format!("{base}_{purpose}_{short}")
}

/// Restores backup `manifest` into a new database `db` and checks it (checksum first, then
/// decryption, decompression, pg_restore, the audit chain and the row counts). On success the
/// database stays (the caller drops it or switches to it); on failure it is dropped.
pub async fn restore_checked(
    backups: &Backups,
    manifest: &Manifest,
    db: &str,
    progress: &Progress,
) -> Result<(), BackupError> {
    let path = backups.file_path(manifest.id);
    progress.step("checksum", json!({}));
    let expected_size = manifest.size_bytes;
    let expected_sha = manifest.sha256.clone();
    let checked = path.clone();
    tokio::task::spawn_blocking(move || check_file(&checked, expected_size, &expected_sha))
        .await
        .map_err(|e| {
            BackupError::io("backup.checksum_mismatch", "the checksum task failed", e)
        })??;
    let identity = key::identity(&backups.keys)
        .map_err(|e| BackupError::new("backup.no_key", format!("{e:#}")))?;

    let mut admin = backups.target.connect(Some("postgres")).await?;
    let ddl = |e: sqlx::Error| {
        BackupError::io(
            "backup.restore_failed",
            "cannot prepare the database to restore into",
            e,
        )
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .map_err(ddl)?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{db}\" TEMPLATE template0"
    )))
    .execute(&mut admin)
    .await
    .map_err(ddl)?;
    let _ = admin.close().await;

    let outcome = async {
        progress.step("restore", json!({}));
        let pg_restore = backups.pg_restore.clone();
        let (url, password) = backups.target.libpq_parts(Some(db));
        let report = progress.clone();
        tokio::task::spawn_blocking(move || {
            restore_stream(
                &path,
                &identity,
                &pg_restore,
                (&url, password.as_deref()),
                &report,
            )
        })
        .await
        .map_err(|e| BackupError::io("backup.restore_failed", "the restore task failed", e))??;
        progress.step("check", json!({}));
        check_restored(backups, manifest, db).await
    }
    .await;
    if outcome.is_err() {
        drop_database(backups, db).await;
    }
    outcome
}

/// Size and checksum of the encrypted file against the manifest.
pub fn check_file(path: &Path, expected_size: u64, expected_sha: &str) -> Result<(), BackupError> {
    let mut file = File::open(path).map_err(|e| {
        BackupError::io(
            "backup.file_missing",
            &format!("cannot open {}", path.display()),
            e,
        )
    })?;
    let size = file
        .metadata()
        .map_err(|e| BackupError::io("backup.file_missing", "cannot read the file", e))?
        .len();
    if size < expected_size {
        return Err(BackupError::new(
            "backup.truncated",
            format!(
                "the file has {size} bytes, the manifest says {expected_size}: it is truncated"
            ),
        ));
    }
    if size != expected_size {
        return Err(BackupError::new(
            "backup.size_mismatch",
            format!("the file has {size} bytes, the manifest says {expected_size}"),
        ));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| BackupError::io("backup.file_missing", "cannot read the file", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected_sha {
        return Err(BackupError::new(
            "backup.checksum_mismatch",
            format!(
                "the file's SHA-256 is {actual}, the manifest says {expected_sha}: the file is damaged or not this backup"
            ),
        ));
    }
    Ok(())
}

/// Marks failures of the age layer, which sits under the zstd decoder.
struct Tagged<R> {
    inner: R,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Tagged<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
}

/// `age -d -i KEY FILE | zstd -d | pg_restore -d URL`.
fn restore_stream(
    path: &PathBuf,
    identity: &age::x25519::Identity,
    pg_restore: &Path,
    (url, password): (&str, Option<&str>),
    progress: &Progress,
) -> Result<(), BackupError> {
    let file = File::open(path).map_err(|e| {
        BackupError::io(
            "backup.file_missing",
            &format!("cannot open {}", path.display()),
            e,
        )
    })?;
    let decryptor = age::Decryptor::new_buffered(BufReader::with_capacity(CHUNK, file))
        .map_err(decrypt_error)?;
    let plain = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(decrypt_error)?;
    let age_failed = Arc::new(AtomicBool::new(false));
    let mut decoder = zstd::Decoder::new(Tagged {
        inner: plain,
        failed: age_failed.clone(),
    })
    .map_err(|e| BackupError::io("backup.decompress_failed", "cannot decompress", e))?;
    let mut child = pg_tool(pg_restore, url, password)
        .args(["--exit-on-error", "--no-owner"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            BackupError::io(
                "backup.restore_failed",
                &format!("cannot run {}", pg_restore.display()),
                e,
            )
        })?;
    let stderr = collect_stderr(child.stderr.take());
    let mut stdin = child.stdin.take();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    let mut next_report = REPORT_EVERY;
    let mut fed: Result<(), BackupError> = Ok(());
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                fed = Err(if age_failed.load(Ordering::Relaxed) {
                    BackupError::io(
                        "backup.decrypt_failed",
                        "the file does not decrypt (damaged)",
                        e,
                    )
                } else {
                    BackupError::io(
                        "backup.decompress_failed",
                        "the decrypted data does not decompress",
                        e,
                    )
                });
                break;
            }
        };
        let Some(pipe) = stdin.as_mut() else { break };
        if pipe.write_all(&buf[..n]).is_err() {
            // pg_restore stopped reading: its exit status and message say why.
            break;
        }
        total += n as u64;
        if total >= next_report {
            progress.step("restore", json!({"restored_bytes": total}));
            next_report += REPORT_EVERY;
        }
    }
    drop(stdin.take());
    if fed.is_err() {
        let _ = child.kill();
    }
    let status = child
        .wait()
        .map_err(|e| BackupError::io("backup.restore_failed", "cannot wait for pg_restore", e))?;
    let stderr = stderr.join().unwrap_or_default();
    fed?;
    if !status.success() {
        return Err(BackupError::new(
            "backup.restore_failed",
            format!("pg_restore failed ({status}): {}", last_lines(&stderr)),
        ));
    }
    Ok(())
}

fn decrypt_error(e: age::DecryptError) -> BackupError {
    match e {
        age::DecryptError::NoMatchingKeys => BackupError::new(
            "backup.wrong_key",
            "the backup is not encrypted to this instance's backup key (import the key it was made with)",
        ),
        other => BackupError::io("backup.decrypt_failed", "the file does not decrypt", other),
    }
}

/// The restored database against the manifest: the audit chain verifies and ends where the
/// manifest says, and every table has the manifest's row count.
async fn check_restored(
    backups: &Backups,
    manifest: &Manifest,
    db: &str,
) -> Result<(), BackupError> {
    let pool = lazy_pool(backups.target.options(Some(db))?, 2);
    let result = async {
        let dbe = |e: sqlx::Error| {
            BackupError::io(
                "backup.restore_failed",
                "cannot read the restored database",
                e,
            )
        };
        let report = verify::verify(&pool).await.map_err(dbe)?;
        if !report.ok {
            return Err(BackupError::new(
                "backup.audit_chain_broken",
                format!(
                    "the audit chain in the backup is broken at record {}: {}",
                    report.first_bad_seq.unwrap_or_default(),
                    report.reason.unwrap_or_default()
                ),
            ));
        }
        if report.head != manifest.audit_chain_head {
            return Err(BackupError::new(
                "backup.manifest_mismatch",
                format!(
                    "the audit chain in the backup ends at {:?}, the manifest says {:?}",
                    report.head.map(|h| h.seq),
                    manifest.audit_chain_head.as_ref().map(|h| h.seq)
                ),
            ));
        }
        let mut conn = pool.acquire().await.map_err(dbe)?;
        let counts = row_counts(&mut conn).await.map_err(dbe)?;
        if counts != manifest.row_counts {
            let table = manifest
                .row_counts
                .keys()
                .chain(counts.keys())
                .find(|t| counts.get(*t) != manifest.row_counts.get(*t))
                .cloned()
                .unwrap_or_default();
            return Err(BackupError::new(
                "backup.row_count_mismatch",
                format!(
                    "table {table} has {:?} rows in the backup, the manifest says {:?}",
                    counts.get(&table),
                    manifest.row_counts.get(&table)
                ),
            ));
        }
        Ok(())
    }
    .await;
    pool.close().await;
    result
}

/// Drops `db` if it exists (connections to it are ended); failures are logged only.
pub async fn drop_database(backups: &Backups, db: &str) {
    let result = async {
        let mut admin = backups.target.connect(Some("postgres")).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .map_err(|e| BackupError::io("backup.database", "cannot drop", e))?;
        let _ = admin.close().await;
        Ok::<(), BackupError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(database = db, error = %e, "cannot drop a scratch database");
    }
}
