//! Backup targets: where copies of the backups go, off this machine's disk. A `directory` (a
//! mounted USB disk or NAS share) or an `s3` bucket (any S3-compatible store), declared in the
//! config file (`[[backup.targets]]`) or in the `backup.targets` setting. Each keeps its own
//! retention (the newest N, one a day for D days, one a month for M months) and copies either
//! after each backup or at its own `schedule`.
//!
//! At a target, backup `<id>` is two objects under the target's prefix: `<id>.pgdump.zst.age`,
//! the same encrypted file as on the local disk, then `<id>.manifest.json`, written last, so a
//! manifest at a target means its file was uploaded whole. A copy is verified by reading it back
//! (size and SHA-256 against the manifest); each local manifest records its copies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::core::backup::{BackupError, Backups, FILE_SUFFIX, MANIFEST_SUFFIX, Manifest};
pub use crate::core::config::backup_target::{Retention, Target, TargetKind, parse};
use crate::core::settings::{DefaultValue, Setting, SettingType};

/// Seeing the backups (and their targets).
const READ: &str = "administration.backups.read";
/// Changing what is backed up where.
const MANAGE: &str = "administration.backups.manage";

/// The backup settings: local retention per kind and the targets.
pub const SETTINGS: &[Setting] = &[
    Setting::new(
        "backup.retention.full",
        SettingType::Integer { min: 1, max: 1000 },
        DefaultValue::Integer(7),
        "Full backups kept on this machine (the newest valid ones).",
    )
    .guarded(READ, MANAGE),
    Setting::new(
        "backup.retention.snapshot",
        SettingType::Integer { min: 1, max: 1000 },
        DefaultValue::Integer(12),
        "Snapshots kept on this machine.",
    )
    .guarded(READ, MANAGE),
    Setting::new(
        "backup.retention.pre_upgrade",
        SettingType::Integer { min: 1, max: 1000 },
        DefaultValue::Integer(3),
        "Pre-upgrade backups kept on this machine.",
    )
    .guarded(READ, MANAGE),
    Setting::new(
        "backup.retention.pre_restore",
        SettingType::Integer { min: 1, max: 1000 },
        DefaultValue::Integer(3),
        "Pre-restore backups kept on this machine.",
    )
    .guarded(READ, MANAGE),
    Setting::new(
        "backup.targets",
        SettingType::Objects { max_items: 8 },
        DefaultValue::EmptyList,
        "Where backups are copied besides this machine: objects {name, kind: directory|s3, path (directory), \
         endpoint, bucket, prefix, region, credentials_file, path_style (s3), kinds, schedule, retention \
         {keep_last, keep_daily_days, keep_monthly_months}}; see docs/operations.md. Credentials come from a \
         file on this machine, never through the API. Targets in the config file come first; a target here \
         with the same name is ignored.",
    )
    .guarded(READ, MANAGE)
    .with_rule(targets_rule)
    .with_reason(),
];

fn targets_rule(value: &Value) -> Result<(), String> {
    parse(value).map(|_| ())
}

/// The targets in force: the config file's, then the setting's whose names the file does not use.
pub fn in_force(file: &[Target], setting: Option<&Value>) -> Vec<Target> {
    let mut all = file.to_vec();
    for target in setting.and_then(|v| parse(v).ok()).unwrap_or_default() {
        if all.iter().any(|t| t.name == target.name) {
            tracing::warn!(target = %target.name, "a backup target of the settings has the name of one in the config file; the file's is used");
        } else {
            all.push(target);
        }
    }
    all
}

/// Where a copy of a backup stands at one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CopyStatus {
    /// To be copied (waiting for the target, or for its schedule).
    Pending,
    /// Uploaded, not read back yet.
    Copied,
    /// Read back: size and SHA-256 match.
    Verified,
    /// The last attempt or check failed (see `error`); it is tried again.
    Failed,
}

/// One backup's copy at one target, as the local manifest records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Copy {
    pub status: CopyStatus,
    /// When the status last changed.
    pub updated_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub error: Option<BackupError>,
}

/// The copies a target keeps under `retention`, of those made at these times (`id`, created).
pub fn kept(copies: &[(Uuid, DateTime<Utc>)], retention: Retention) -> BTreeSet<Uuid> {
    let mut newest_first = copies.to_vec();
    newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut keep: BTreeSet<Uuid> = newest_first
        .iter()
        .take(retention.keep_last.max(1) as usize)
        .map(|c| c.0)
        .collect();
    let Some(newest) = newest_first.first().map(|c| c.1) else {
        return keep;
    };
    let mut days = BTreeSet::new();
    let mut months = BTreeSet::new();
    for (id, at) in &newest_first {
        let day = at.date_naive();
        let age_days = (newest.date_naive() - day).num_days();
        if age_days < i64::from(retention.keep_daily_days) && days.insert(day) {
            keep.insert(*id);
        }
        let month = (at.year(), at.month());
        let age_months =
            (newest.year() - at.year()) * 12 + newest.month() as i32 - at.month() as i32;
        if age_months < retention.keep_monthly_months as i32 && months.insert(month) {
            keep.insert(*id);
        }
    }
    keep
}

/// A target opened for use.
pub struct Opened {
    pub target: Target,
    store: Arc<dyn ObjectStore>,
    prefix: Option<ObjectPath>,
}

fn unreachable(target: &Target, what: impl std::fmt::Display) -> BackupError {
    BackupError::new(
        "backup.target_unreachable",
        format!("target {}: {what}", target.name),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// Opens `target` for the backups of `data_dir`: a directory must exist and lie outside the
/// data directory; an S3 bucket's credentials file must be readable by its owner only.
pub fn open(target: &Target, data_dir: &Path) -> Result<Opened, BackupError> {
    let store = match target.kind {
        TargetKind::Directory => open_directory(target, data_dir)?,
        TargetKind::S3 => open_s3(target)?,
    };
    Ok(Opened {
        target: target.clone(),
        store,
        prefix: target
            .prefix
            .as_deref()
            .map(|p| ObjectPath::from(p.trim_matches('/'))),
    })
}

/// A directory target's folder: it must exist (an unplugged disk's folder does not) and lie
/// outside the data directory.
fn open_directory(target: &Target, data_dir: &Path) -> Result<Arc<dyn ObjectStore>, BackupError> {
    let path = target.path.as_deref().unwrap_or(Path::new(""));
    if !path.is_dir() {
        return Err(unreachable(
            target,
            format!(
                "{} is not an existing folder (is the disk plugged in and mounted?)",
                path.display()
            ),
        ));
    }
    let inside = match (path.canonicalize(), data_dir.canonicalize()) {
        (Ok(path), Ok(data)) => path.starts_with(&data),
        _ => false,
    };
    if inside {
        return Err(BackupError::new(
            "backup.target_refused",
            format!(
                "target {}: {} is inside the data directory; a copy there is lost with it",
                target.name,
                path.display()
            ),
        ));
    }
    Ok(Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| unreachable(target, e))?,
    ))
}

/// An S3 bucket's client, with the credentials from the target's file (owner-only).
fn open_s3(target: &Target) -> Result<Arc<dyn ObjectStore>, BackupError> {
    let file = target.credentials_file.as_deref().unwrap_or(Path::new(""));
    {
        use std::os::unix::fs::MetadataExt;
        if let Ok(meta) = std::fs::metadata(file)
            && meta.mode() & 0o077 != 0
        {
            return Err(BackupError::new(
                "backup.target_credentials",
                format!(
                    "target {}: the credentials file {} must be readable by its owner only (chmod 600)",
                    target.name,
                    file.display()
                ),
            ));
        }
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        BackupError::new(
            "backup.target_credentials",
            format!(
                "target {}: cannot read the credentials file {}: {e}",
                target.name,
                file.display()
            ),
        )
    })?;
    // The parser's message is left out: it could quote the file (any file an admin
    // names), and this error is shown through the API.
    let credentials: Credentials = toml::from_str(&text).map_err(|_| {
        BackupError::new(
            "backup.target_credentials",
            format!(
                "target {}: {} must be TOML with access_key_id and secret_access_key (and optionally session_token), nothing else",
                target.name,
                file.display(),
            ),
        )
    })?;
    let mut builder = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(target.bucket.clone().unwrap_or_default())
        .with_region(
            target
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_owned()),
        )
        .with_access_key_id(credentials.access_key_id)
        .with_secret_access_key(credentials.secret_access_key)
        .with_virtual_hosted_style_request(!target.path_style)
        // A request may take long (a read-back streams the whole file: an hour is 11 GB
        // at 25 Mbit/s); a failed one is tried again twice within five minutes, then
        // the copy job's own backoff takes over.
        .with_retry(object_store::RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(300),
            ..Default::default()
        })
        .with_client_options(
            object_store::ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(10))
                .with_timeout(Duration::from_secs(3600))
                .with_allow_http(
                    target
                        .endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                ),
        );
    if let Some(token) = credentials.session_token {
        builder = builder.with_token(token);
    }
    if let Some(endpoint) = &target.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    Ok(Arc::new(
        builder.build().map_err(|e| unreachable(target, e))?,
    ))
}

/// A store operation that failed: `backup.target_unreachable` when the target could not be
/// reached (network, missing folder, time-out), `backup.target_refused` when it answered no
/// (credentials refused, no such bucket, permissions). Either way the copy waits and is tried
/// again; the API answers 503 with the reason.
fn failed(target: &Target, what: &str, e: impl std::fmt::Display) -> BackupError {
    let text = e.to_string();
    let unreachable = [
        "error sending request",
        "Connection refused",
        "No such file or directory",
        "dns error",
        "timed out",
        "operation timed out",
        "connection closed",
    ]
    .iter()
    .any(|p| text.contains(p));
    let code = if unreachable {
        "backup.target_unreachable"
    } else {
        "backup.target_refused"
    };
    BackupError::new(code, format!("target {}: {what}: {text}", target.name))
}

impl Opened {
    fn location(&self, name: &str) -> ObjectPath {
        match &self.prefix {
            Some(prefix) => prefix.clone().join(name),
            None => ObjectPath::from(name),
        }
    }

    /// Uploads the local file `from` as `name` (in parts when large), replacing what is there.
    pub async fn upload(&self, from: &Path, name: &str) -> Result<(), BackupError> {
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(|e| BackupError::io("backup.copy_failed", "cannot read the backup file", e))?;
        let mut writer = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            self.location(name),
            16 << 20,
        );
        if let Err(e) = tokio::io::copy(&mut file, &mut writer).await {
            let _ = writer.abort().await;
            return Err(failed(&self.target, "upload", e));
        }
        writer
            .shutdown()
            .await
            .map_err(|e| failed(&self.target, "upload", e))
    }

    /// Stores `bytes` as `name`.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        self.store
            .put(&self.location(name), PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| failed(&self.target, "upload", e))
    }

    /// The size and hex SHA-256 of `name`, read back whole; `None` when it is not there.
    pub async fn read_back(&self, name: &str) -> Result<Option<(u64, String)>, BackupError> {
        let got = match self.store.get(&self.location(name)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(failed(&self.target, "read back", e)),
        };
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(&self.target, "read back", e))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(Some((size, hex::encode(hasher.finalize()))))
    }

    /// Downloads `name` into the local file `to` (created or replaced).
    pub async fn download(&self, name: &str, to: &Path) -> Result<(), BackupError> {
        let got = self
            .store
            .get(&self.location(name))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => BackupError::new(
                    "backup.not_found",
                    format!("target {} has no {name}", self.target.name),
                ),
                e => failed(&self.target, "download", e),
            })?;
        let mut out = tokio::fs::File::create(to)
            .await
            .map_err(|e| BackupError::io("backup.write_failed", "cannot write the download", e))?;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(&self.target, "download", e))?;
            out.write_all(&chunk).await.map_err(|e| {
                BackupError::io("backup.write_failed", "cannot write the download", e)
            })?;
        }
        out.sync_all()
            .await
            .map_err(|e| BackupError::io("backup.write_failed", "cannot write the download", e))
    }

    /// The sizes of the objects at the target, by name (under the prefix).
    pub async fn sizes(&self) -> Result<BTreeMap<String, u64>, BackupError> {
        let mut listing = self.store.list(self.prefix.as_ref());
        let mut out = BTreeMap::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| failed(&self.target, "list", e))?;
            if let Some(name) = meta.location.filename() {
                out.insert(name.to_owned(), meta.size);
            }
        }
        Ok(out)
    }

    /// The manifests at the target, newest first (unreadable ones are skipped).
    pub async fn manifests(&self) -> Result<Vec<Manifest>, BackupError> {
        let mut out = Vec::new();
        for name in self.sizes().await?.keys() {
            let Some(id) = name.strip_suffix(MANIFEST_SUFFIX) else {
                continue;
            };
            if Uuid::parse_str(id).is_err() {
                continue;
            }
            let got = match self.store.get(&self.location(name)).await {
                Ok(got) => got,
                Err(e) => return Err(failed(&self.target, "read", e)),
            };
            let bytes = got
                .bytes()
                .await
                .map_err(|e| failed(&self.target, "read", e))?;
            if let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) {
                out.push(manifest);
            }
        }
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(out)
    }

    /// Deletes backup `id` at the target (manifest first: without it the file is no backup).
    pub async fn delete(&self, id: Uuid) -> Result<(), BackupError> {
        for name in [
            format!("{id}{MANIFEST_SUFFIX}"),
            format!("{id}{FILE_SUFFIX}"),
        ] {
            match self.store.delete(&self.location(&name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(failed(&self.target, "delete", e)),
            }
        }
        Ok(())
    }
}

/// The manifest as stored at a target: the local one without its record of copies.
pub fn manifest_for_target(manifest: &Manifest) -> Vec<u8> {
    let mut copy = manifest.clone();
    copy.copies.clear();
    serde_json::to_vec_pretty(&copy).unwrap_or_default()
}

/// Does `target` take backups of `manifest`'s kind?
pub fn takes(target: &Target, manifest: &Manifest) -> bool {
    target.kinds.iter().any(|k| k == manifest.kind.as_str())
}

/// Copies the local backup of `manifest` to `opened` (file first, manifest last) and verifies
/// the copy by reading it back. The local manifest records `copied`, then the outcome.
pub async fn copy(
    backups: &Backups,
    opened: &Opened,
    manifest: &Manifest,
) -> Result<(), BackupError> {
    let id = manifest.id;
    let name = &opened.target.name;
    let file = format!("{id}{FILE_SUFFIX}");
    opened.upload(&backups.file_path(id), &file).await?;
    opened
        .put(
            &format!("{id}{MANIFEST_SUFFIX}"),
            manifest_for_target(manifest),
        )
        .await?;
    let now = backups.clock.now();
    backups.update(id, |m| {
        m.copies.insert(
            name.clone(),
            Copy {
                status: CopyStatus::Copied,
                updated_at: now,
                verified_at: None,
                error: None,
            },
        );
    })?;
    match opened.read_back(&file).await? {
        Some((size, sha256)) if size == manifest.size_bytes && sha256 == manifest.sha256 => Ok(()),
        Some((size, _)) => Err(BackupError::new(
            "backup.copy_damaged",
            format!(
                "target {name}: the copy read back differs from the backup ({size} bytes, expected {})",
                manifest.size_bytes
            ),
        )),
        None => Err(BackupError::new(
            "backup.copy_missing",
            format!("target {name}: the copy is not there after the upload"),
        )),
    }
}

/// Records the outcome of a copy or check of backup `id` at `target` in the local manifest.
pub fn record(
    backups: &Backups,
    id: Uuid,
    target: &str,
    outcome: &Result<(), BackupError>,
) -> Result<(), BackupError> {
    let now = backups.clock.now();
    backups
        .update(id, |m| {
            let verified_at = outcome
                .is_ok()
                .then_some(now)
                .or_else(|| m.copies.get(target).and_then(|c| c.verified_at));
            m.copies.insert(
                target.to_owned(),
                Copy {
                    status: if outcome.is_ok() {
                        CopyStatus::Verified
                    } else {
                        CopyStatus::Failed
                    },
                    updated_at: now,
                    verified_at,
                    error: outcome.as_ref().err().cloned(),
                },
            );
        })
        .map(|_| ())
}

/// Deletes the copies at `opened` that its retention no longer keeps (of the kinds it takes);
/// returns their ids. The local manifests forget those copies.
pub async fn prune(backups: &Backups, opened: &Opened) -> Result<Vec<Uuid>, BackupError> {
    let at_target: Vec<Manifest> = opened
        .manifests()
        .await?
        .into_iter()
        .filter(|m| takes(&opened.target, m))
        .collect();
    let times: Vec<(Uuid, DateTime<Utc>)> =
        at_target.iter().map(|m| (m.id, m.created_at)).collect();
    let keep = kept(&times, opened.target.retention);
    let mut deleted = Vec::new();
    for manifest in at_target.iter().filter(|m| !keep.contains(&m.id)) {
        opened.delete(manifest.id).await?;
        let _ = backups.update(manifest.id, |m| {
            m.copies.remove(&opened.target.name);
        });
        deleted.push(manifest.id);
    }
    Ok(deleted)
}

/// Fetches backup `id` from `opened` into the local backups directory (replacing a local file of
/// that backup) and returns its local manifest: `pending` until a verification or the guided
/// restore checks it; a copy whose size or checksum differs from its manifest is refused.
pub async fn fetch(backups: &Backups, opened: &Opened, id: Uuid) -> Result<Manifest, BackupError> {
    let name = &opened.target.name;
    let manifest_file = format!("{id}{MANIFEST_SUFFIX}");
    // Named like a backup being written, so an interrupted fetch is cleaned up the same way.
    let partial = backups.dir.join(format!("{id}.partial"));
    opened.download(&manifest_file, &partial).await?;
    let bytes = std::fs::read(&partial)
        .map_err(|e| BackupError::io("backup.write_failed", "cannot read the download", e))?;
    let _ = std::fs::remove_file(&partial);
    let mut manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        BackupError::io(
            "backup.manifest_invalid",
            &format!("target {name}: the manifest of {id} is not a plugpos backup manifest"),
            e,
        )
    })?;
    if manifest.id != id || manifest.format != super::FORMAT {
        return Err(BackupError::new(
            "backup.manifest_invalid",
            format!("target {name}: the manifest of {id} describes another backup or format"),
        ));
    }
    // Always the target's copy, even when this machine has the backup: a restore from a target
    // is what an admin does when the local file cannot be trusted.
    let local_copies = backups.load(id).map(|l| l.copies).unwrap_or_default();
    opened
        .download(&format!("{id}{FILE_SUFFIX}"), &partial)
        .await?;
    let (path, size, sha256) = (
        partial.clone(),
        manifest.size_bytes,
        manifest.sha256.clone(),
    );
    let checked =
        tokio::task::spawn_blocking(move || super::pipeline::check_file(&path, size, &sha256))
            .await
            .unwrap_or_else(|e| {
                Err(BackupError::io(
                    "backup.copy_failed",
                    "the check stopped",
                    e,
                ))
            });
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&partial);
        return Err(BackupError::new(
            &e.code,
            format!(
                "target {name}: the copy of {id} does not match its manifest: {}",
                e.message
            ),
        ));
    }
    std::fs::rename(&partial, backups.file_path(id))
        .map_err(|e| BackupError::io("backup.write_failed", "cannot store the download", e))?;
    manifest.status = super::Status::Pending;
    manifest.verified_at = None;
    manifest.error = None;
    manifest.copies = local_copies;
    manifest.copies.insert(
        name.clone(),
        Copy {
            status: CopyStatus::Verified,
            updated_at: backups.clock.now(),
            verified_at: Some(backups.clock.now()),
            error: None,
        },
    );
    backups.replace(&manifest)?;
    Ok(manifest)
}

/// What the last check of a target found (kept in `<backups>/targets.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TargetState {
    pub checked_at: Option<DateTime<Utc>>,
    /// The target answered at the last check (`null`: not checked yet).
    pub reachable: Option<bool>,
    pub error: Option<BackupError>,
    /// The newest backup with a verified copy there.
    pub newest_copy_at: Option<DateTime<Utc>>,
    /// A backup more than a day old has no verified copy there.
    pub behind: bool,
    /// The last time copies were queued at the target's own schedule.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The last time `backup_target_behind` was reported (once a day at most).
    pub behind_reported_at: Option<DateTime<Utc>>,
    /// When a check first saw the target (it is not behind in its first day).
    pub first_seen_at: Option<DateTime<Utc>>,
    /// A directory target on the same file system as the data directory: one disk failure
    /// takes both.
    #[serde(default)]
    pub same_disk: bool,
}

fn states_path(backups: &Backups) -> PathBuf {
    backups.dir.join("targets.json")
}

/// The last check of each target, by name.
pub fn states(backups: &Backups) -> BTreeMap<String, TargetState> {
    std::fs::read(states_path(backups))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Keeps the last check of each target.
pub fn save_states(
    backups: &Backups,
    states: &BTreeMap<String, TargetState>,
) -> Result<(), BackupError> {
    let json = serde_json::to_vec_pretty(states).map_err(|e| {
        BackupError::io("backup.write_failed", "cannot encode the targets' state", e)
    })?;
    crate::core::data_dir::write_private_file(&states_path(backups), &json).map_err(|e| {
        BackupError::io(
            "backup.write_failed",
            "cannot write the targets' state",
            format!("{e:#}"),
        )
    })
}

/// Is `target` behind at `now`: known for more than a day, it lacks a verified copy of a valid
/// local backup of its kinds that is more than a day old, not older than its newest verified copy
/// (an older one its retention may not want) and, for a target with its own schedule, made
/// before that schedule last came due?
pub fn behind(
    target: &Target,
    local: &[Manifest],
    now: DateTime<Utc>,
    state: &TargetState,
) -> bool {
    let day = chrono::Duration::days(1);
    if state.first_seen_at.is_none_or(|at| now - at <= day) {
        return false;
    }
    let newest_copy = newest_copy(target, local);
    local.iter().any(|m| {
        takes(target, m)
            && m.status == super::Status::Valid
            && now - m.created_at > day
            && m.copies
                .get(&target.name)
                .is_none_or(|c| c.status != CopyStatus::Verified)
            && newest_copy.is_none_or(|at| m.created_at >= at)
            && (target.schedule.is_none() || state.scheduled_at.is_some_and(|at| m.created_at < at))
    })
}

/// Is a directory target on the same file system as the data directory (so a disk failure takes
/// both)? `false` for S3 and for what cannot be told.
pub fn same_disk(target: &Target, data_dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (target.kind, &target.path) {
        (TargetKind::Directory, Some(path)) => {
            match (std::fs::metadata(path), std::fs::metadata(data_dir)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev(),
                _ => false,
            }
        }
        _ => false,
    }
}

/// The creation time of the newest backup with a verified copy at `target`.
pub fn newest_copy(target: &Target, local: &[Manifest]) -> Option<DateTime<Utc>> {
    local
        .iter()
        .filter(|m| {
            m.copies
                .get(&target.name)
                .is_some_and(|c| c.status == CopyStatus::Verified)
        })
        .map(|m| m.created_at)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn retention_keeps_the_newest_then_one_a_day_then_one_a_month() {
        // Two backups a day from 1 January to 30 April.
        let mut copies = Vec::new();
        let mut day = at(2026, 1, 1, 3);
        while day < at(2026, 5, 1, 0) {
            copies.push((Uuid::now_v7(), day));
            copies.push((Uuid::now_v7(), day + chrono::Duration::hours(12)));
            day += chrono::Duration::days(1);
        }
        let retention = Retention {
            keep_last: 3,
            keep_daily_days: 5,
            keep_monthly_months: 3,
        };
        let keep = kept(&copies, retention);
        let mut times: Vec<DateTime<Utc>> = copies
            .iter()
            .filter(|c| keep.contains(&c.0))
            .map(|c| c.1)
            .collect();
        times.sort();
        assert_eq!(
            times,
            vec![
                at(2026, 2, 28, 15),
                at(2026, 3, 31, 15),
                at(2026, 4, 26, 15),
                at(2026, 4, 27, 15),
                at(2026, 4, 28, 15),
                at(2026, 4, 29, 15),
                at(2026, 4, 30, 3),
                at(2026, 4, 30, 15),
            ]
        );
        assert_eq!(
            kept(
                &copies[..1],
                Retention {
                    keep_last: 0,
                    keep_daily_days: 0,
                    keep_monthly_months: 0
                }
            )
            .len(),
            1
        );
    }
}
