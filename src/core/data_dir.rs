//! The data directory: one place for everything the instance keeps on disk.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// An absolute, prepared data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory and its standard subdirectories if needed and makes the path absolute.
    pub fn prepare(path: &Path) -> anyhow::Result<DataDir> {
        fs::create_dir_all(path)
            .with_context(|| format!("cannot create data directory {}", path.display()))?;
        let root = fs::canonicalize(path)
            .with_context(|| format!("cannot resolve data directory {}", path.display()))?;
        let dir = DataDir { root };
        for sub in ["backups", "exports", "logs"] {
            fs::create_dir_all(dir.root.join(sub))
                .with_context(|| format!("cannot create {}", dir.root.join(sub).display()))?;
        }
        let keys = dir.keys();
        fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", keys.display()))?;
        dir.check_writable()?;
        Ok(dir)
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<data_dir>/logs`.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `<data_dir>/keys` (mode 0700; key files 0600).
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// `<data_dir>/setup-token`, present only while the instance is uninitialized.
    pub fn setup_token(&self) -> PathBuf {
        self.root.join("setup-token")
    }

    /// `<data_dir>/plugpos.pid`, written by a running `plugpos serve`.
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("plugpos.pid")
    }

    /// Proves the directory is writable by creating and removing a file (a startup and readiness check).
    pub fn check_writable(&self) -> anyhow::Result<()> {
        let probe = self.root.join(".write-check");
        fs::write(&probe, b"ok")
            .with_context(|| format!("data directory {} is not writable", self.root.display()))?;
        fs::remove_file(&probe)
            .with_context(|| format!("data directory {} is not writable", self.root.display()))?;
        Ok(())
    }
}

/// Writes `contents` to `path` readable by the owner only (0600), replacing any older file atomically.
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
