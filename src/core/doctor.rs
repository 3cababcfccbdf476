//! The installation's checks (`plugpos doctor`, the support bundle's `doctor.json`): every check an admin (or support) acts on, one line each with OK,
//! WARN or FAIL and the remedy: the data directory (owner, modes, free disk), PostgreSQL (its
//! programs, the managed cluster, the database, the migrations), the audit chain, the clock, the
//! backup key, the newest valid backup and each backup target, the server and its port, the
//! systemd service. It starts nothing (the server may be running): the database checks run only
//! when the database is up, and say so otherwise. Exit 0 when all are OK, 1 with warnings, 2
//! with failures.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

use crate::core::backup::{Backups, DbTarget, Status, key, targets};
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::data_dir::pid_file::running_server;
use crate::core::db::{external_options, lazy_pool, migrations};
use crate::core::modules::Verifier;
use crate::core::postgres::{APP_ROLE, ClusterOptions, DATABASE_NAME, ManagedCluster, PgBinaries};
use crate::shared::clock::Clock;

/// Free disk below these is a warning, then a failure (a backup needs room; PostgreSQL stops
/// when the disk fills).
const DISK_WARN_BYTES: u64 = 2 << 30;
const DISK_FAIL_BYTES: u64 = 512 << 20;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    /// What to do about it (none when OK).
    pub remedy: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        level: Level::Ok,
        detail: detail.into(),
        remedy: None,
    }
}

fn bad(name: &'static str, level: Level, detail: impl Into<String>, remedy: &str) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
        remedy: Some(remedy.to_owned()),
    }
}

/// Every check, in the order an admin reads them.
pub async fn checks(config: &Config, modules: &[Verifier]) -> anyhow::Result<Vec<Check>> {
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let clock = Clock::system();
    let mut out = vec![data_dir_check(&data_dir), disk_check(&data_dir)];
    let pool = database_checks(config, &data_dir, &mut out).await;
    if let Some(pool) = &pool {
        out.push(migrations_check(pool).await);
        out.push(audit_check(pool, &data_dir.keys()).await);
        out.push(clock_check(pool, clock.now()).await);
        for check in modules {
            out.push(module_check(check, pool, &data_dir.keys()).await);
        }
        pool.close().await;
    }
    // Only the file layout is used for the backups: no database connection is made.
    let backups = Backups::new(
        &data_dir,
        DbTarget::new(""),
        config.database.pg_bin_dir.as_deref(),
        clock.clone(),
    );
    let (key_ok, key_line) = key_finding(&data_dir);
    out.push(finding(
        "backup_key",
        key_ok,
        key_line,
        "run setup, or `plugpos backup import-key` on a new machine",
    ));
    let (backup_ok, backup_line) = backup_finding(&backups, config, clock.now());
    out.push(finding(
        "backups",
        backup_ok,
        backup_line,
        "take one: `plugpos backup create`, and check the daily schedule",
    ));
    for (target_ok, line) in target_findings(config, &backups) {
        out.push(finding("backup_targets", target_ok, line, "see the server's last check: GET /api/v1/backups/targets, and docs/operations.md (\"Backup targets\")"));
    }
    out.push(server_check(config, &data_dir).await);
    out.push(service_check());
    out.push(tls_check(config, clock.now()));
    Ok(out)
}

/// The HTTPS certificate, when `[http.tls]` names one: it loads, its key fits, its fingerprint,
/// and how long it stays valid (a warning in its last 30 days, a failure once expired: tills then
/// refuse the server).
fn tls_check(config: &Config, now: chrono::DateTime<chrono::Utc>) -> Check {
    let Some((cert, key)) = config.http.tls.files(&config.data_dir) else {
        return ok(
            "tls",
            "not configured (the server speaks HTTP; `plugpos tls self-signed` makes a certificate)",
        );
    };
    let loaded = crate::core::http::tls::Certificates::open(cert.clone(), key)
        .and_then(|c| Ok((c, crate::core::http::tls::not_after(&cert)?)));
    match loaded {
        Ok((certificates, not_after)) => tls_expiry(
            format!(
                "{} loads with its key, SHA-256 fingerprint {}",
                cert.display(),
                certificates.fingerprint().unwrap_or_default()
            ),
            not_after,
            now,
        ),
        Err(e) => bad(
            "tls",
            Level::Fail,
            format!("{e:#}"),
            "fix [http.tls] or make a new pair: plugpos tls self-signed --force",
        ),
    }
}

/// The `tls` finding for a certificate described by `line` that is valid until `not_after`.
fn tls_expiry(
    line: String,
    not_after: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> Check {
    let until = not_after.format("%Y-%m-%d %H:%M UTC");
    let days = (not_after - now).num_days();
    let renew = "renew it (a self-signed one: plugpos tls self-signed --force, then re-pin the tills); the server picks a new file up without a restart";
    if not_after <= now {
        bad(
            "tls",
            Level::Fail,
            format!("{line}; EXPIRED on {until}: tills and browsers refuse it"),
            renew,
        )
    } else if days < 30 {
        bad(
            "tls",
            Level::Warn,
            format!("{line}; expires on {until}, in {days} day(s)"),
            renew,
        )
    } else {
        ok("tls", format!("{line}; valid until {until}"))
    }
}

fn finding(name: &'static str, fine: bool, line: String, remedy: &str) -> Check {
    match fine {
        true => ok(name, line),
        false => bad(name, Level::Warn, line, remedy),
    }
}

/// The data directory: ours, and its secrets private.
fn data_dir_check(data_dir: &DataDir) -> Check {
    let root = data_dir.root();
    let Ok(meta) = std::fs::metadata(root) else {
        return bad(
            "data_directory",
            Level::Fail,
            format!("{} cannot be read", root.display()),
            "check the path and its permissions",
        );
    };
    let me = nix::unistd::geteuid().as_raw();
    // Root may check the service's directory (the .deb's /var/lib/plugpos is plugpos's).
    if meta.uid() != me && me != 0 {
        return bad(
            "data_directory",
            Level::Fail,
            format!(
                "{} belongs to uid {}, not to this user (uid {me})",
                root.display(),
                meta.uid()
            ),
            "run plugpos as the user that owns it (the service's: plugpos), or chown -R it",
        );
    }
    let keys = data_dir.keys();
    let mut loose = Vec::new();
    if meta.permissions().mode() & 0o022 != 0 {
        loose.push(format!("{} (writable by others)", root.display()));
    }
    if std::fs::metadata(&keys).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        loose.push(keys.display().to_string());
    }
    for entry in std::fs::read_dir(&keys).into_iter().flatten().flatten() {
        if entry
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 != 0)
        {
            loose.push(entry.path().display().to_string());
        }
    }
    match loose.is_empty() {
        true => ok(
            "data_directory",
            if meta.uid() == me {
                format!("{} is this user's; its keys are private", root.display())
            } else {
                format!(
                    "{} belongs to uid {} (checked as root); its keys are private",
                    root.display(),
                    meta.uid()
                )
            },
        ),
        false => bad(
            "data_directory",
            Level::Fail,
            format!("others may read {}", loose.join(", ")),
            "chmod 700 the keys directory and 600 its files",
        ),
    }
}

/// Free space where the data lives.
fn disk_check(data_dir: &DataDir) -> Check {
    match nix::sys::statvfs::statvfs(data_dir.root()) {
        Ok(stat) => {
            let free = stat.blocks_available() * stat.fragment_size();
            let shown = format!(
                "{:.1} GiB free for {}",
                free as f64 / f64::from(1u32 << 30),
                data_dir.root().display()
            );
            if free < DISK_FAIL_BYTES {
                bad(
                    "disk_space",
                    Level::Fail,
                    shown,
                    "free space now: PostgreSQL stops when the disk is full",
                )
            } else if free < DISK_WARN_BYTES {
                bad(
                    "disk_space",
                    Level::Warn,
                    shown,
                    "free space or move old backups to a target",
                )
            } else {
                ok("disk_space", shown)
            }
        }
        Err(e) => bad(
            "disk_space",
            Level::Warn,
            format!("cannot measure: {e}"),
            "check the data directory's file system",
        ),
    }
}

/// PostgreSQL's programs, the managed cluster, and a connection to the database when it is up.
pub async fn database_checks(
    config: &Config,
    data_dir: &DataDir,
    out: &mut Vec<Check>,
) -> Option<PgPool> {
    if let Some(url) = config.external_database_url() {
        out.push(ok("postgres", "an external PostgreSQL (database.url)"));
        return connect(external_options(url).ok()?, out).await;
    }
    let pinned = config.database.pg_bin_dir.as_deref();
    match PgBinaries::find(
        pinned,
        std::env::var("PATH").ok().as_deref(),
        Path::new("/usr/lib/postgresql"),
    ) {
        Ok(bin) => {
            let version = std::process::Command::new(&bin.postgres)
                .arg("--version")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_default();
            out.push(ok(
                "postgres_programs",
                format!("{} ({version})", bin.postgres.display()),
            ));
        }
        Err(e) => {
            out.push(bad(
                "postgres_programs",
                Level::Fail,
                format!("{e:#}"),
                "apt-get install postgresql, or set database.pg_bin_dir",
            ));
            return None;
        }
    }
    let cluster = ManagedCluster::new(data_dir, pinned, ClusterOptions::default()).ok()?;
    if !cluster.is_initialized() {
        out.push(bad(
            "cluster",
            Level::Warn,
            "the managed cluster is not created yet",
            "start the server once (plugpos serve), or run setup",
        ));
        return None;
    }
    let Some(pid) = cluster.running_pid() else {
        out.push(bad(
            "cluster",
            Level::Warn,
            "the managed cluster is stopped: the database checks were skipped",
            "start the server (systemctl start plugpos, or plugpos serve)",
        ));
        return None;
    };
    out.push(ok(
        "cluster",
        format!(
            "running (pid {pid}), data in {}",
            cluster.pgdata().display()
        ),
    ));
    connect(cluster.connect_options_as(DATABASE_NAME, APP_ROLE), out).await
}

async fn connect(
    options: sqlx::postgres::PgConnectOptions,
    out: &mut Vec<Check>,
) -> Option<PgPool> {
    let pool = lazy_pool(options, 2);
    let answered = tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::query_scalar::<_, String>("SELECT version()").fetch_one(&pool),
    )
    .await;
    match answered {
        Ok(Ok(version)) => {
            let short: String = version.split(',').next().unwrap_or_default().to_owned();
            out.push(ok("database", format!("answers ({short})")));
            Some(pool)
        }
        Ok(Err(e)) => {
            out.push(bad(
                "database",
                Level::Fail,
                format!("does not answer: {e}"),
                "see the PostgreSQL log in <data_dir>/pg/log, or the external server",
            ));
            None
        }
        Err(_) => {
            out.push(bad(
                "database",
                Level::Fail,
                "no answer within 5 s",
                "is PostgreSQL overloaded or hung? see its log",
            ));
            None
        }
    }
}

/// A module's consistency check (`Module::doctor_checks`).
async fn module_check(check: &Verifier, pool: &PgPool, keys: &Path) -> Check {
    match (check.run)(pool, keys, &[]).await {
        Ok(found) if found.ok => ok(check.name, format!("{} checked, consistent", found.checked)),
        Ok(found) => bad(
            check.name,
            Level::Fail,
            format!(
                "{} of {} inconsistent: {}",
                found.problems.len(),
                found.checked,
                found.problems.join("; ")
            ),
            "report it with a support bundle (plugpos support-bundle); do not correct it by hand",
        ),
        Err(e) => bad(
            check.name,
            Level::Warn,
            format!("could not run: {e:#}"),
            "see the server's log",
        ),
    }
}

async fn migrations_check(pool: &PgPool) -> Check {
    match migrations::check_current(pool).await {
        Ok(()) => ok("migrations", "the schema is current"),
        Err(e) => bad(
            "migrations",
            Level::Fail,
            e.to_string(),
            "plugpos migrate (after a backup), or start the server, which migrates",
        ),
    }
}

async fn audit_check(pool: &PgPool, keys: &Path) -> Check {
    match crate::core::audit::verify::verify_instance(pool, keys, Vec::new()).await {
        Ok(report) if report.ok => ok(
            "audit_chain",
            format!(
                "{} records verify, {} checkpoints",
                report.verified, report.checkpoints_checked
            ),
        ),
        Ok(report) => bad(
            "audit_chain",
            Level::Fail,
            format!(
                "breaks at record {}: {}",
                report.first_bad_seq.unwrap_or_default(),
                report.reason.unwrap_or_default()
            ),
            "do not change anything; export the audit log and contact support (docs/operations.md, \"The audit log\")",
        ),
        Err(e) => bad(
            "audit_chain",
            Level::Warn,
            format!("cannot be read: {e}"),
            "check the database",
        ),
    }
}

/// This machine's clock against the database server's (the same clock when managed).
async fn clock_check(pool: &PgPool, now: chrono::DateTime<chrono::Utc>) -> Check {
    let theirs: Result<chrono::DateTime<chrono::Utc>, _> =
        sqlx::query_scalar("SELECT now()").fetch_one(pool).await;
    match theirs {
        Ok(theirs) => {
            let offset = (now - theirs).num_milliseconds().abs();
            if now.format("%Y").to_string().parse::<i32>().unwrap_or(0) < 2024 {
                bad(
                    "clock",
                    Level::Fail,
                    format!("the clock says {now}"),
                    "set the system clock (timedatectl set-ntp true)",
                )
            } else if offset > 5_000 {
                bad(
                    "clock",
                    Level::Warn,
                    format!("{offset} ms from the database server's"),
                    "synchronise both clocks (NTP)",
                )
            } else {
                ok(
                    "clock",
                    format!(
                        "{} UTC, {offset} ms from the database's",
                        now.format("%Y-%m-%d %H:%M:%S")
                    ),
                )
            }
        }
        Err(e) => bad(
            "clock",
            Level::Warn,
            format!("cannot compare: {e}"),
            "check the database",
        ),
    }
}

/// Is this data directory's server running, and answering on its port?
async fn server_check(config: &Config, data_dir: &DataDir) -> Check {
    let Some(pid) = running_server(data_dir) else {
        return bad(
            "server",
            Level::Warn,
            "plugpos serve is not running for this data directory",
            "systemctl start plugpos (or plugpos serve)",
        );
    };
    let host = match config.http.bind.to_string().as_str() {
        "0.0.0.0" | "::" => "127.0.0.1".to_owned(),
        other => other.to_owned(),
    };
    let port = config.http.port;
    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    {
        Ok(Ok(_)) => match listens_on(&pid, port) {
            Some(false) => bad(
                "server",
                Level::Fail,
                format!("running (pid {pid}), but port {port} is held by another program"),
                "stop the other program or change http.port",
            ),
            Some(true) => ok(
                "server",
                format!("running (pid {pid}), listening on port {port}, which answers on {host}"),
            ),
            None => ok(
                "server",
                format!(
                    "running (pid {pid}), port {port} answers on {host} (whose socket it is cannot be read as this user)"
                ),
            ),
        },
        _ => bad(
            "server",
            Level::Fail,
            format!("running (pid {pid}) but nothing answers on {host}:{port}"),
            "is another program on the port? see the server's log",
        ),
    }
}

/// Does process `pid` hold the socket listening on `port`? `None` when its descriptors cannot
/// be read (another user's process, and not root).
fn listens_on(pid: &str, port: u16) -> Option<bool> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut found = false;
    for fd in fds.flatten() {
        if let Ok(target) = std::fs::read_link(fd.path())
            && inodes.iter().any(|i| target.as_os_str() == i.as_str())
        {
            found = true;
        }
    }
    Some(found)
}

/// The systemd service, where systemd runs.
fn service_check() -> Check {
    if !Path::new("/run/systemd/system").is_dir() {
        return ok("service", "systemd does not run here (not applicable)");
    }
    let enabled = std::process::Command::new("systemctl")
        .args(["is-enabled", "plugpos.service"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    match enabled.as_str() {
        "enabled" => ok("service", "plugpos.service is enabled"),
        "" => bad(
            "service",
            Level::Warn,
            "plugpos.service is not installed",
            "install the package (docs/operations.md)",
        ),
        other => bad(
            "service",
            Level::Warn,
            format!("plugpos.service is {other}"),
            "systemctl enable plugpos",
        ),
    }
}

/// Is the backup key there?
fn key_finding(data_dir: &DataDir) -> (bool, String) {
    let keys = data_dir.keys();
    if !key::path(&keys).exists() {
        return (
            false,
            "there is no backup key yet: run setup, or import-key on a new machine".to_owned(),
        );
    }
    match key::identity(&keys) {
        Ok(_) => (
            true,
            "the backup key is there and readable (keep the exported copy off this machine)"
                .to_owned(),
        ),
        Err(e) => (false, format!("the backup key cannot be read: {e:#}")),
    }
}

/// How old may the newest valid backup be? Twice the time between two scheduled backups (full
/// or snapshot, whichever runs more often), and at least a day; `None` when none is scheduled.
fn backup_allowance(
    config: &Config,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::Duration> {
    let mut gaps = Vec::new();
    for expression in [
        &config.schedules.backup_full,
        &config.schedules.backup_snapshot,
    ] {
        let Ok(Some(cron)) = crate::shared::cron::parse_cron(expression) else {
            continue;
        };
        let Ok(first) = cron.find_next_occurrence(&now, false) else {
            continue;
        };
        let Ok(second) = cron.find_next_occurrence(&first, false) else {
            continue;
        };
        gaps.push(second - first);
    }
    let gap = gaps.into_iter().min()?;
    Some((gap * 2).max(chrono::Duration::hours(24)))
}

/// How old is the newest valid backup, against the schedule?
fn backup_finding(
    backups: &Backups,
    config: &Config,
    now: chrono::DateTime<chrono::Utc>,
) -> (bool, String) {
    let allowance = backup_allowance(config, now);
    let Some(newest) = backups
        .list()
        .into_iter()
        .find(|m| m.status == Status::Valid)
    else {
        return (false, "there is no valid backup on this machine".to_owned());
    };
    let age = now - newest.created_at;
    let line = format!(
        "newest valid backup {} from {} ({} hours ago)",
        newest.id,
        newest.created_at.format("%Y-%m-%d %H:%M UTC"),
        age.num_hours()
    );
    match allowance {
        None => (
            false,
            format!(
                "{line}; no backup is scheduled (schedules.backup_full and backup_snapshot are off)"
            ),
        ),
        Some(allowed) if age > allowed => (
            false,
            format!(
                "{line}: older than {} hours, twice the schedule's interval: scheduled backups are failing",
                allowed.num_hours()
            ),
        ),
        Some(_) => (true, line),
    }
}

/// Each backup target as the server's last check found it.
fn target_findings(config: &Config, backups: &Backups) -> Vec<(bool, String)> {
    let states = targets::states(backups);
    let mut out = Vec::new();
    if states.is_empty() && config.backup.targets.is_empty() {
        out.push((
            false,
            "no backup target known (none in the config file, none from the settings checked by the server): every backup may be on this machine's disk only (docs/operations.md, \"Backup targets\")"
                .to_owned(),
        ));
    }
    for target in &config.backup.targets {
        if !states.contains_key(&target.name) {
            out.push((
                false,
                format!(
                    "backup target {} has not been checked yet (is the server running?)",
                    target.name
                ),
            ));
        }
    }
    for (name, state) in &states {
        let newest = state
            .newest_copy_at
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| "none".to_owned());
        let last_error = state
            .error
            .as_ref()
            .map(|e| format!("; last check: {}", e.message))
            .unwrap_or_default();
        out.push(if state.behind {
            (
                false,
                format!("backup target {name} is more than a day behind (newest verified copy: {newest}){last_error}"),
            )
        } else if state.reachable == Some(false) {
            (
                false,
                format!("backup target {name} was unreachable at the last check{last_error}"),
            )
        } else {
            (true, format!("backup target {name}: newest verified copy {newest}"))
        });
        if state.same_disk {
            out.push((
                false,
                format!("backup target {name} is on the same disk as the data directory: a disk failure loses both"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    #[test]
    fn a_certificate_is_fine_then_due_for_renewal_then_expired() {
        let made = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let (cert, _key) =
            crate::core::http::tls::self_signed(&["shop.lan".to_owned()], made, 90).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, cert).unwrap();
        let not_after = crate::core::http::tls::not_after(&path).unwrap();
        assert_eq!(
            not_after.date_naive(),
            (made + Duration::days(90)).date_naive()
        );
        let check = |now| tls_expiry("cert.pem loads".to_owned(), not_after, now);
        let fine = check(made + Duration::days(10));
        assert!(matches!(fine.level, Level::Ok), "{}", fine.detail);
        assert!(
            fine.detail.contains("valid until 2026-05-30"),
            "{}",
            fine.detail
        );
        let due = check(made + Duration::days(80));
        assert!(matches!(due.level, Level::Warn), "{}", due.detail);
        assert!(due.detail.contains("in 9 day(s)"), "{}", due.detail);
        let gone = check(made + Duration::days(91));
        assert!(matches!(gone.level, Level::Fail), "{}", gone.detail);
        assert!(
            gone.detail.contains("EXPIRED on 2026-05-30"),
            "{}",
            gone.detail
        );
    }
}
