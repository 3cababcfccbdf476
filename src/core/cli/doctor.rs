//! `plugpos doctor`: what an admin should act on, read from the data directory without starting
//! anything (the server may be running): the backup key, the newest valid backup, and each
//! backup target as the server's last check found it. Exit 1 when something needs attention.

use anyhow::bail;

use crate::core::backup::{Backups, DbTarget, Status, key, targets};
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::shared::clock::Clock;

/// A valid backup older than this is worth a warning (the daily backup failed twice).
const BACKUP_WARN_AFTER_HOURS: i64 = 48;

pub async fn run(config: &Config) -> anyhow::Result<()> {
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let clock = Clock::system();
    // Only the file layout is used: no database connection is made.
    let backups = Backups::new(
        &data_dir,
        DbTarget::new(""),
        config.database.pg_bin_dir.as_deref(),
        clock.clone(),
    );
    let mut findings = vec![
        key_finding(&data_dir),
        backup_finding(&backups, clock.now()),
    ];
    findings.extend(target_findings(config, &backups));
    let mut warnings = 0;
    for (ok, line) in findings {
        say!("{} {line}", if ok { "ok     " } else { "warning" });
        warnings += usize::from(!ok);
    }
    match warnings {
        0 => Ok(()),
        1 => bail!("1 thing needs attention (above)"),
        n => bail!("{n} things need attention (above)"),
    }
}

/// Is the backup key there?
fn key_finding(data_dir: &DataDir) -> (bool, String) {
    match key::path(&data_dir.keys()).exists() {
        true => (
            true,
            "the backup key is there (keep the exported copy off this machine)".to_owned(),
        ),
        false => (
            false,
            "there is no backup key yet: run setup, or import-key on a new machine".to_owned(),
        ),
    }
}

/// How old is the newest valid backup?
fn backup_finding(backups: &Backups, now: chrono::DateTime<chrono::Utc>) -> (bool, String) {
    match backups
        .list()
        .into_iter()
        .find(|m| m.status == Status::Valid)
    {
        Some(newest) => {
            let age = now - newest.created_at;
            (
                age.num_hours() < BACKUP_WARN_AFTER_HOURS,
                format!(
                    "newest valid backup {} from {} ({} hours ago)",
                    newest.id,
                    newest.created_at.format("%Y-%m-%d %H:%M UTC"),
                    age.num_hours()
                ),
            )
        }
        None => (false, "there is no valid backup on this machine".to_owned()),
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
