//! The support bundle: one `.tar.zst` an engineer can read, with nothing secret in it
//! (`plugpos support-bundle`, `POST /api/v1/support-bundle`).
//!
//! Parts, each produced on its own so that one failing leaves the others whole:
//! `version.txt`, `config.toml` (effective values with their sources, secrets redacted),
//! `logs/` (the last days, scrubbed line by line), `doctor.json`, `backups.json`, `system.json`,
//! and from the database `migrations.json`, `jobs.json`, `audit.json`, `database.json`. When the
//! database is down its parts hold `{"unavailable": why}` and the manifest says so; the rest is
//! complete. `manifest.json`, written last, lists every file with its size, sha256, what produced
//! it and any error.

pub mod http;
pub mod redact;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::core::backup::{Backups, DbTarget, Status, key};
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::db::migrations;
use crate::core::upgrade::history;
use crate::core::upgrade::package::BinaryFacts;

use self::redact::Redactor;

/// Log days included when the setting is absent.
pub const DEFAULT_LOG_DAYS: u32 = 3;
/// Jobs included, newest first.
const JOBS: i64 = 500;
/// A log file larger than this (PostgreSQL's own log is one file that grows) is included from
/// this many bytes before its end.
const LOG_FILE_LIMIT: u64 = 8 << 20;
/// A query running longer than this is listed in `database.json`.
const LONG_QUERY_SECS: i64 = 60;

/// What the bundle is made from.
pub struct Sources<'a> {
    pub config: &'a Config,
    pub data_dir: &'a DataDir,
    /// The database, when it answers (the server's pool, or one the CLI opened); otherwise why not.
    pub database: Result<PgPool, String>,
    pub log_days: u32,
    pub now: DateTime<Utc>,
    /// `plugpos support-bundle` or `POST /api/v1/support-bundle by <user>`.
    pub requested_by: String,
    /// The modules' consistency checks, run with the doctor's.
    pub doctor_checks: Vec<crate::core::modules::Verifier>,
}

/// One file of the bundle, as the manifest lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// What produced it.
    pub source: String,
    /// Why it is incomplete or missing, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The bundle's `manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub format: &'static str,
    pub created_at: DateTime<Utc>,
    pub plugpos_version: &'static str,
    pub requested_by: String,
    pub redaction: &'static str,
    pub files: Vec<Entry>,
}

struct Part {
    name: String,
    bytes: Vec<u8>,
    source: String,
    error: Option<String>,
}

/// A JSON part, redacted whole (values under secret names, known secrets, secret shapes): a
/// part's producer need not know which of its fields might carry one.
fn json_part(redactor: &Redactor, name: &str, source: &str, value: Result<Value, String>) -> Part {
    let (value, error) = match value {
        Ok(value) => (redactor.json(&value), None),
        Err(why) => {
            let why = redactor.text(&why);
            (json!({ "unavailable": why }), Some(why))
        }
    };
    Part {
        name: name.to_owned(),
        bytes: serde_json::to_vec_pretty(&value).unwrap_or_default(),
        source: source.to_owned(),
        error,
    }
}

/// Gathers every part and writes the bundle to `out`; returns its manifest.
pub async fn write(
    sources: Sources<'_>,
    out: impl Write + Send + 'static,
) -> anyhow::Result<Manifest> {
    let mut redactor = Redactor::for_instance(sources.config, sources.data_dir.root());
    if let Ok(pool) = &sources.database {
        // Targets added in the settings have credentials files too.
        let setting: Option<Value> =
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'backup.targets'")
                .fetch_optional(pool)
                .await
                .ok()
                .flatten();
        redactor.learn_targets(&crate::core::backup::targets::in_force(
            &[],
            setting.as_ref(),
        ));
    }
    let mut parts = vec![
        version_part(&sources, &redactor).await,
        config_part(sources.config, &redactor),
        json_part(
            &redactor,
            "doctor.json",
            "the checks of plugpos doctor",
            crate::core::doctor::checks(sources.config, &sources.doctor_checks)
                .await
                .map(|checks| json!({ "checks": redactor.json(&serde_json::to_value(checks).unwrap_or_default()) }))
                .map_err(|e| format!("{e:#}")),
        ),
        json_part(&redactor, "backups.json", "the backup manifests in <data_dir>/backups", Ok(backups(&sources))),
        json_part(&redactor, "system.json", "the operating system", Ok(system(&sources).await)),
    ];
    let database = &sources
        .database
        .as_ref()
        .map_err(|why| format!("the database is not available: {why}"));
    parts.push(json_part(
        &redactor,
        "migrations.json",
        "_sqlx_migrations against this binary's migrations",
        match database {
            Ok(pool) => migrations_status(pool).await,
            Err(why) => Err(why.clone()),
        },
    ));
    parts.push(json_part(
        &redactor,
        "jobs.json",
        &format!(
            "the newest {JOBS} jobs and the newest {JOBS} failed or dead ones, payloads redacted"
        ),
        match database {
            Ok(pool) => jobs(pool, &redactor).await,
            Err(why) => Err(why.clone()),
        },
    ));
    parts.push(json_part(
        &redactor,
        "audit.json",
        "the audit chain's verification and its last checkpoint",
        match database {
            Ok(pool) => audit(pool, sources.data_dir).await,
            Err(why) => Err(why.clone()),
        },
    ));
    parts.push(json_part(
        &redactor,
        "database.json",
        "PostgreSQL's statistics views",
        match database {
            Ok(pool) => database_status(pool).await,
            Err(why) => Err(why.clone()),
        },
    ));
    let logs = sources.data_dir.logs();
    let since = sources.now - chrono::Duration::days(i64::from(sources.log_days));
    let manifest = Manifest {
        format: "plugpos-support-1",
        created_at: sources.now,
        plugpos_version: env!("CARGO_PKG_VERSION"),
        requested_by: sources.requested_by.clone(),
        redaction: "known secrets of this instance by value; values under secret-named keys; bearer tokens, JWTs, age identities, URL passwords, otpauth secrets, SQL passwords by shape",
        files: Vec::new(),
    };
    tokio::task::spawn_blocking(move || assemble(parts, &logs, since, &redactor, manifest, out))
        .await
        .map_err(|e| anyhow::anyhow!("the bundle task failed: {e}"))?
}

/// Writes the parts, then the scrubbed logs one file at a time, then the manifest.
fn assemble(
    parts: Vec<Part>,
    logs: &Path,
    since: DateTime<Utc>,
    redactor: &Redactor,
    mut manifest: Manifest,
    out: impl Write,
) -> anyhow::Result<Manifest> {
    let mut tar = tar::Builder::new(zstd::Encoder::new(out, 9)?);
    let mtime = u64::try_from(manifest.created_at.timestamp()).unwrap_or(0);
    let mut add = |tar: &mut tar::Builder<_>, part: Part| -> anyhow::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(part.bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        tar.append_data(&mut header, &part.name, part.bytes.as_slice())?;
        manifest.files.push(Entry {
            name: part.name,
            size: part.bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&part.bytes)),
            source: part.source,
            error: part.error,
        });
        Ok(())
    };
    for part in parts {
        add(&mut tar, part)?;
    }
    for part in log_parts(logs, since, redactor) {
        add(&mut tar, part)?;
    }
    let listing = serde_json::to_vec_pretty(&manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(listing.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    tar.append_data(&mut header, "manifest.json", listing.as_slice())?;
    let mut out = tar.into_inner()?.finish()?;
    out.flush()?;
    Ok(manifest)
}

/// The log files changed since `since` (the server's and the managed PostgreSQL's), each line
/// scrubbed; a file that cannot be read is listed with the reason.
fn log_parts(logs: &Path, since: DateTime<Utc>, redactor: &Redactor) -> Vec<Part> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(logs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                m.is_file()
                    && m.modified()
                        .is_ok_and(|t| DateTime::<Utc>::from(t) >= since)
            })
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return vec![Part {
            name: "logs/README.txt".to_owned(),
            bytes: format!("no log file in {} changed since {since}\n", logs.display())
                .into_bytes(),
            source: "the log directory".to_owned(),
            error: None,
        }];
    }
    files
        .into_iter()
        .map(|path| {
            let name = format!(
                "logs/{}",
                path.file_name().unwrap_or_default().to_string_lossy()
            );
            let source = format!("{}, every line scrubbed", path.display());
            match tail(&path, LOG_FILE_LIMIT) {
                Ok((bytes, cut)) => {
                    let mut out = String::with_capacity(bytes.len());
                    if cut {
                        out.push_str(&format!(
                            "[support bundle: only the last {} MiB of this file]\n",
                            LOG_FILE_LIMIT >> 20
                        ));
                    }
                    for line in String::from_utf8_lossy(&bytes).lines() {
                        out.push_str(&redactor.log_line(line));
                        out.push('\n');
                    }
                    Part {
                        name,
                        bytes: out.into_bytes(),
                        source,
                        error: None,
                    }
                }
                Err(e) => Part {
                    name,
                    bytes: Vec::new(),
                    source,
                    error: Some(format!("cannot read it: {e}")),
                },
            }
        })
        .collect()
}

/// The last `limit` bytes of `path` (from a line start), and whether anything was left out.
fn tail(path: &Path, limit: u64) -> std::io::Result<(Vec<u8>, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size <= limit {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        return Ok((bytes, false));
    }
    file.seek(SeekFrom::Start(size - limit))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let start = bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
    Ok((bytes.split_off(start), true))
}

async fn version_part(sources: &Sources<'_>, redactor: &Redactor) -> Part {
    let facts = BinaryFacts::current();
    let mut text = format!(
        "plugpos {}\nbuild {}\narch {}\nschema (this binary) {}\n",
        facts.version, facts.build, facts.arch, facts.schema_version
    );
    match &sources.database {
        Ok(pool) => {
            let applied: Result<Option<i64>, _> =
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(pool)
                    .await;
            match applied {
                Ok(version) => {
                    text.push_str(&format!("schema (the database) {}\n", version.unwrap_or(0)))
                }
                Err(e) => text.push_str(&format!("schema (the database) unknown: {e}\n")),
            }
        }
        Err(why) => text.push_str(&format!("schema (the database) unknown: {why}\n")),
    }
    let upgrades = history::read(sources.data_dir.root());
    text.push_str(&format!(
        "\nversion history ({} upgrade attempts):\n",
        upgrades.len()
    ));
    for entry in upgrades {
        text.push_str(&format!(
            "{}\n",
            serde_json::to_string(&entry).unwrap_or_default()
        ));
    }
    Part {
        name: "version.txt".to_owned(),
        bytes: redactor.text(&text).into_bytes(),
        source: "this binary and <data_dir>/upgrades/history.jsonl".to_owned(),
        error: None,
    }
}

/// The effective configuration, one `key = value  # source` line each, secrets redacted.
fn config_part(config: &Config, redactor: &Redactor) -> Part {
    let mut text = String::from(
        "# The effective configuration: defaults, the file, PLUGPOS_* variables and flags.\n# Secrets are redacted.\n",
    );
    for setting in crate::core::settings::file::settings(config) {
        let value = if redact::secret_name(&setting.key) && !setting.value.is_null() {
            Value::from(redact::REDACTED)
        } else {
            redactor.json(&setting.value)
        };
        text.push_str(&format!(
            "{} = {}  # {}\n",
            setting.key, value, setting.source
        ));
    }
    Part {
        name: "config.toml".to_owned(),
        bytes: text.into_bytes(),
        source: "the configuration this process loaded".to_owned(),
        error: None,
    }
}

fn backups(sources: &Sources<'_>) -> Value {
    let backups = Backups::new(
        sources.data_dir,
        DbTarget::new(""),
        sources.config.database.pg_bin_dir.as_deref(),
        crate::shared::clock::Clock::system(),
    );
    let list: Vec<Value> = backups
        .list()
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id, "kind": m.kind, "status": m.status, "created_at": m.created_at,
                "size_bytes": m.size_bytes, "verified_at": m.verified_at, "app_version": m.app_version,
                "schema_version": m.schema_version, "error": m.error, "copies": m.copies,
            })
        })
        .collect();
    let last_valid = backups
        .list()
        .into_iter()
        .filter(|m| m.status == Status::Valid)
        .map(|m| m.created_at)
        .max();
    let key_file = key::path(&sources.data_dir.keys());
    json!({
        "backups": list,
        "last_valid_at": last_valid,
        "key_present": key_file.exists(),
        "key_readable": key::identity(&sources.data_dir.keys()).is_ok(),
        "targets": sources.config.backup.targets.iter().map(|t| json!({"name": t.name, "kind": t.kind})).collect::<Vec<_>>(),
    })
}

async fn system(sources: &Sources<'_>) -> Value {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_owned());
    let uname = nix::sys::utsname::uname().ok();
    let meminfo = read("/proc/meminfo");
    let mem = |name: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    };
    let uptime = read("/proc/uptime")
        .split_whitespace()
        .next()
        .and_then(|s| s.parse::<f64>().ok());
    let binary = std::env::current_exe().ok();
    let mut disks = serde_json::Map::new();
    for (what, path) in [
        ("data_dir", Some(sources.data_dir.root().to_owned())),
        ("logs", Some(sources.data_dir.logs())),
        ("backups", Some(sources.data_dir.root().join("backups"))),
        (
            "binary",
            binary.as_ref().and_then(|b| b.parent().map(Path::to_owned)),
        ),
    ] {
        let Some(path) = path else { continue };
        let free = nix::sys::statvfs::statvfs(&path)
            .map(|s| json!({"path": path, "free_bytes": s.blocks_available() * s.fragment_size(), "total_bytes": s.blocks() * s.fragment_size()}))
            .unwrap_or_else(|e| json!({"path": path, "error": e.to_string()}));
        disks.insert(what.to_owned(), free);
    }
    let clock_offset = match &sources.database {
        Ok(pool) => {
            let before = crate::shared::clock::Clock::system().now();
            let db_now: Result<DateTime<Utc>, _> =
                sqlx::query_scalar("SELECT now()").fetch_one(pool).await;
            db_now
                .map(|t| json!({"database_minus_this_machine_ms": (t - before).num_milliseconds()}))
                .unwrap_or_else(|e| json!({"error": e.to_string()}))
        }
        Err(why) => json!({"unavailable": why}),
    };
    let mut variables: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("PLUGPOS_"))
        .collect();
    variables.sort();
    json!({
        "os": os,
        "kernel": uname.as_ref().map(|u| format!("{} {}", u.sysname().to_string_lossy(), u.release().to_string_lossy())),
        "machine": uname.as_ref().map(|u| u.machine().to_string_lossy().into_owned()),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "memory_total_bytes": mem("MemTotal:"),
        "memory_available_bytes": mem("MemAvailable:"),
        "uptime_secs": uptime,
        "disks": disks,
        "clock_offset": clock_offset,
        "binary": binary,
        "pid": std::process::id(),
        "environment_variables_set": variables,
        "now": sources.now,
    })
}

async fn migrations_status(pool: &PgPool) -> Result<Value, String> {
    let status = migrations::status(pool).await.map_err(|e| e.to_string())?;
    Ok(json!({
        "embedded_schema_version": migrations::embedded_schema_version(),
        "migrations": status.iter().map(|m| json!({"version": m.version, "description": m.description, "state": m.state.to_string()})).collect::<Vec<_>>(),
    }))
}

async fn jobs(pool: &PgPool, redactor: &Redactor) -> Result<Value, String> {
    let columns = crate::core::jobs::COLUMNS;
    let jobs: Vec<crate::core::jobs::Job> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM ( \
             (SELECT {columns} FROM jobs ORDER BY created_at DESC LIMIT {JOBS}) \
             UNION \
             (SELECT {columns} FROM jobs WHERE status IN ('failed', 'dead') ORDER BY created_at DESC LIMIT {JOBS}) \
         ) j ORDER BY created_at DESC"
    )))
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    let failed = jobs
        .iter()
        .filter(|j| matches!(j.status.as_str(), "failed" | "dead"))
        .count();
    let items: Vec<Value> = jobs
        .iter()
        .map(|j| {
            let mut value = serde_json::to_value(j).unwrap_or_default();
            value["payload"] = redactor.json(&j.payload);
            value["result"] = j
                .result
                .as_ref()
                .map(|r| redactor.json(r))
                .unwrap_or(Value::Null);
            value["progress"] = j
                .progress
                .as_ref()
                .map(|p| redactor.json(p))
                .unwrap_or(Value::Null);
            value["last_error"] = j
                .last_error
                .as_ref()
                .map(|e| Value::from(redactor.text(e)))
                .unwrap_or(Value::Null);
            value
        })
        .collect();
    Ok(json!({"count": items.len(), "failed_or_dead": failed, "jobs": items}))
}

async fn audit(pool: &PgPool, data_dir: &DataDir) -> Result<Value, String> {
    let report = crate::core::audit::verify::verify_instance(pool, &data_dir.keys(), Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    let last = crate::core::audit::checkpoint::list(pool)
        .await
        .map_err(|e| e.to_string())?
        .pop();
    Ok(json!({"verification": report, "last_checkpoint": last}))
}

async fn database_status(pool: &PgPool) -> Result<Value, String> {
    let query = |sql: &'static str| sqlx::query_scalar::<_, Value>(sql).fetch_one(pool);
    let run = async {
        let about = query(
            "SELECT json_build_object('version', version(), 'database', current_database(), \
             'size_bytes', pg_database_size(current_database()), 'started_at', pg_postmaster_start_time(), \
             'max_connections', current_setting('max_connections')::int)",
        )
        .await?;
        let connections = query(
            "SELECT coalesce(json_object_agg(coalesce(state, 'background'), n), '{}') \
             FROM (SELECT state, count(*) AS n FROM pg_stat_activity GROUP BY state) s",
        )
        .await?;
        let long: Value = sqlx::query_scalar(
            "SELECT coalesce(json_agg(json_build_object('pid', pid, 'state', state, 'seconds', \
             extract(epoch FROM now() - query_start)::bigint, 'wait_event', wait_event, \
             'application', application_name, 'command', upper(split_part(ltrim(query), ' ', 1)))), '[]') \
             FROM pg_stat_activity WHERE state <> 'idle' AND pid <> pg_backend_pid() \
             AND query_start < now() - make_interval(secs => $1)",
        )
        .bind(LONG_QUERY_SECS as f64)
        .fetch_one(pool)
        .await?;
        let replication =
            query("SELECT json_build_object('standbys', count(*)) FROM pg_stat_replication")
                .await?;
        Ok::<_, sqlx::Error>(json!({
            "about": about,
            "connections_by_state": connections,
            "queries_running_over_60s": long,
            "replication": replication,
        }))
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .map_err(|_| "PostgreSQL did not answer within 20 s".to_owned())?
        .map_err(|e| e.to_string())
}
