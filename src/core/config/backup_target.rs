//! A backup target's definition, as the config file (`[[backup.targets]]`) and the
//! `backup.targets` setting write it, and its checks. Copies are made by `core::backup::targets`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The kinds of backup (`core::backup::Kind`'s names; a test there keeps them equal).
pub const KINDS: [&str; 4] = ["full", "snapshot", "pre-upgrade", "pre-restore"];

/// What kind of place a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Directory,
    S3,
}

/// How many copies a target keeps: the newest `keep_last`, and the newest of each of the last
/// `keep_daily_days` days and `keep_monthly_months` months (UTC). Never fewer than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    pub keep_last: u32,
    pub keep_daily_days: u32,
    pub keep_monthly_months: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: 7,
            keep_daily_days: 14,
            keep_monthly_months: 12,
        }
    }
}

/// One target, as written in the config file or the setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// 1 to 32 lowercase letters, digits, `-` or `_` (`usb`, `nas`, `offsite`).
    pub name: String,
    pub kind: TargetKind,
    /// `directory`: an existing folder on the mounted disk (not the mount point itself, so that
    /// an unplugged disk is noticed rather than written around).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// `s3`: the store's URL (`https://s3.eu-central-1.amazonaws.com`, `http://nas:9000`);
    /// absent: AWS for `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// Folder inside the bucket (`shop-1/backups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `s3`: a TOML file with `access_key_id` and `secret_access_key` (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// `s3`: path-style requests (`endpoint/bucket/key`), as most self-hosted stores need.
    #[serde(default)]
    pub path_style: bool,
    /// The kinds of backup copied (`full`, `snapshot`, `pre-upgrade`, `pre-restore`; default:
    /// full and pre-upgrade backups).
    #[serde(default = "default_kinds")]
    pub kinds: Vec<String>,
    /// A cron expression (business timezone): copies are made at these times; absent: right
    /// after each backup has verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default)]
    pub retention: Retention,
}

fn default_kinds() -> Vec<String> {
    vec!["full".to_owned(), "pre-upgrade".to_owned()]
}

impl Target {
    /// What is wrong with it, one sentence each (empty: nothing).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            out.push("name must be 1 to 32 lowercase letters, digits, - or _".to_owned());
        }
        match self.kind {
            TargetKind::Directory => {
                if !self.path.as_ref().is_some_and(|p| p.is_absolute()) {
                    out.push("a directory target needs an absolute path".to_owned());
                }
                if self.bucket.is_some()
                    || self.endpoint.is_some()
                    || self.credentials_file.is_some()
                {
                    out.push("endpoint, bucket and credentials_file are for s3 targets".to_owned());
                }
            }
            TargetKind::S3 => {
                if self.path.is_some() {
                    out.push("path is for directory targets; s3 uses bucket and prefix".to_owned());
                }
                let bucket_ok = self.bucket.as_ref().is_some_and(|b| {
                    (3..=63).contains(&b.len())
                        && b.bytes().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'
                        })
                });
                if !bucket_ok {
                    out.push("an s3 target needs a bucket name (3 to 63 lowercase letters, digits, - or .)".to_owned());
                }
                if let Some(endpoint) = &self.endpoint {
                    let authority = endpoint
                        .split_once("://")
                        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
                        .unwrap_or_default();
                    if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
                        out.push("endpoint must start with https:// or http://".to_owned());
                    } else if authority.contains('@') {
                        out.push(
                            "endpoint must not hold credentials; put them in credentials_file"
                                .to_owned(),
                        );
                    }
                }
                if self.endpoint.is_none() && self.region.is_none() {
                    out.push("an s3 target needs an endpoint or a region".to_owned());
                }
                if !self
                    .credentials_file
                    .as_ref()
                    .is_some_and(|p| p.is_absolute())
                {
                    out.push("an s3 target needs credentials_file, an absolute path".to_owned());
                }
                if let Some(prefix) = &self.prefix
                    && (prefix.len() > 200
                        || prefix
                            .split('/')
                            .any(|part| part.is_empty() || part == ".."))
                {
                    out.push("prefix must be folder names separated by /".to_owned());
                }
            }
        }
        if self.kinds.is_empty() || !self.kinds.iter().all(|k| KINDS.contains(&k.as_str())) {
            out.push(format!(
                "kinds must name kinds of backup among {}",
                KINDS.join(", ")
            ));
        }
        if let Some(schedule) = &self.schedule
            && !matches!(crate::shared::cron::parse_cron(schedule), Ok(Some(_)))
        {
            out.push("schedule must be a cron expression".to_owned());
        }
        let r = self.retention;
        if r.keep_last == 0
            || r.keep_last > 1000
            || r.keep_daily_days > 3660
            || r.keep_monthly_months > 1200
        {
            out.push("retention.keep_last must be 1 to 1000, keep_daily_days at most 3660, keep_monthly_months at most 1200".to_owned());
        }
        out
    }
}

/// Parses the `backup.targets` setting's value.
pub fn parse(value: &Value) -> Result<Vec<Target>, String> {
    let targets: Vec<Target> = serde_json::from_value(value.clone())
        .map_err(|e| format!("is not a list of targets: {e}"))?;
    let mut names = BTreeSet::new();
    for (i, target) in targets.iter().enumerate() {
        if let Some(problem) = target.problems().into_iter().next() {
            return Err(format!("target {i}: {problem}"));
        }
        if !names.insert(target.name.as_str()) {
            return Err(format!("target {i}: the name {} is taken", target.name));
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_are_checked_whole() {
        let ok = json!([
            {"name": "usb", "kind": "directory", "path": "/mnt/usb/plugpos"},
            {"name": "offsite", "kind": "s3", "endpoint": "http://127.0.0.1:9000", "bucket": "shop-backups",
             "credentials_file": "/etc/plugpos/s3.toml", "path_style": true, "retention": {"keep_last": 3}}
        ]);
        let targets = parse(&ok).unwrap();
        assert_eq!(targets[1].retention.keep_daily_days, 14);
        assert_eq!(targets[0].kinds, ["full", "pre-upgrade"]);
        for (bad, why) in [
            (
                json!([{"name": "usb", "kind": "directory"}]),
                "target 0: a directory target needs an absolute path",
            ),
            (
                json!([{"name": "Usb", "kind": "directory", "path": "/x"}]),
                "target 0: name must be 1 to 32 lowercase letters, digits, - or _",
            ),
            (
                json!([{"name": "s", "kind": "s3", "bucket": "b1", "endpoint": "ftp://x", "credentials_file": "/c"}]),
                "target 0: an s3 target needs a bucket name (3 to 63 lowercase letters, digits, - or .)",
            ),
            (
                json!([{"name": "a", "kind": "directory", "path": "/x"}, {"name": "a", "kind": "directory", "path": "/y"}]),
                "target 1: the name a is taken",
            ),
            (
                json!([{"name": "a", "kind": "directory", "path": "/x", "schedule": "every day"}]),
                "target 0: schedule must be a cron expression",
            ),
        ] {
            assert_eq!(parse(&bad).unwrap_err(), why);
        }
        assert!(
            parse(&json!([{"name": "a", "kind": "tape", "path": "/x"}]))
                .unwrap_err()
                .starts_with("is not a list of targets")
        );
        assert!(
            parse(
                &json!([{"name": "a", "kind": "directory", "path": "/x", "secret_access_key": "k"}])
            )
            .is_err()
        );
    }
}
