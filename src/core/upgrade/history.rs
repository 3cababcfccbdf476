//! The version history: `<data_dir>/upgrades/history.jsonl`, one JSON line per upgrade attempt
//! (upgraded, rolled back, or a rollback that itself failed). A file, not a table: restoring the
//! pre-upgrade backup must not erase the record of the upgrade that was rolled back.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new version runs and passed every check.
    Upgraded,
    /// A step failed; the previous binary and the pre-upgrade backup were put back.
    RolledBack,
    /// A step failed and putting the previous version back failed too: see `error`.
    RollbackFailed,
    /// Stopped before anything changed (the pre-upgrade backup failed); the server runs as before.
    Aborted,
}

/// One upgrade attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    pub at: DateTime<Utc>,
    /// The version installed before.
    pub from_version: String,
    /// The version the package holds.
    pub to_version: String,
    pub outcome: Outcome,
    /// The step that failed (`migrate`, `start`, `checks`...), when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// What went wrong, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pre-upgrade backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<Uuid>,
    /// sha256 of the package file.
    pub package_sha256: String,
}

/// The history file of a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("upgrades").join("history.jsonl")
}

/// Appends `entry` (and syncs it: it is the record of what happened to the installation).
pub fn append(data_dir: &Path, entry: &Entry) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = path(data_dir);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut line = serde_json::to_vec(entry)?;
    line.push(b'\n');
    // Never through a link: the file is the installation's record, not a way to write elsewhere.
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(&line)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Every attempt, oldest first (none when there is no history yet). A damaged line is skipped.
pub fn read(data_dir: &Path) -> Vec<Entry> {
    fs::read_to_string(path(data_dir))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}
