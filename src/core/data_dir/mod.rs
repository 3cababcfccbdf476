//! The data directory: one place for everything the instance keeps on disk.

pub mod pid_file;

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
        // Others may pass through the root (the managed cluster's own user reaches `pg/` when we
        // run as root) but not list it; what is kept below is for the owner and its group.
        restrict(&dir.root, 0o711)?;
        for sub in ["backups", "exports", "logs"] {
            fs::create_dir_all(dir.root.join(sub))
                .with_context(|| format!("cannot create {}", dir.root.join(sub).display()))?;
            restrict(&dir.root.join(sub), 0o750)?;
        }
        let keys = dir.keys();
        fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", keys.display()))?;
        dir.check_writable()?;
        Ok(dir)
    }

    /// An existing data directory as it is: nothing is created and no mode is changed (for
    /// commands run by root on a directory the service's user owns, such as `plugpos upgrade`).
    pub fn existing(path: &Path) -> anyhow::Result<DataDir> {
        let root = fs::canonicalize(path)
            .with_context(|| format!("there is no data directory {}", path.display()))?;
        if !root.is_dir() {
            anyhow::bail!("{} is not a directory", root.display());
        }
        Ok(DataDir { root })
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

/// Sets `path`'s mode when it is ours. A directory someone else owns (a shared group directory,
/// a bind mount) keeps the modes its owner chose: a warning says so, and the start goes on.
fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .uid();
    if owner != nix::unistd::geteuid().as_raw() {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "not our directory: its mode is left as its owner set it");
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot restrict {}", path.display()))
}

/// Writes `contents` to `path` readable by the owner only (0600), replacing any older file atomically.
///
/// The bytes go to a new temporary file beside `path` with an unpredictable name, created
/// exclusively and never through a symbolic link (`O_CREAT|O_EXCL|O_NOFOLLOW`), then renamed over
/// `path` (which replaces a link there rather than following it): a local user who plants a file or
/// a link where the temporary file will be cannot read or redirect what is written (a key exported
/// with `plugpos backup export-key -o /tmp/...`, say).
pub fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))
        .and_then(|()| {
            fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
        });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_never_written_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let target = dir.path().join("key");
        // What the earlier fixed temporary name was: `key.tmp`.
        std::os::unix::fs::symlink(&victim, dir.path().join("key.tmp")).unwrap();
        write_private_file(&target, b"secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(fs::read(&target).unwrap(), b"secret");
        let mode = fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A link planted at the final name is replaced, not followed.
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(&victim, &linked).unwrap();
        write_private_file(&linked, b"secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
                    && !e
                        .as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("key")
            })
            .count();
        assert_eq!(leftovers, 0, "no temporary file left behind");
    }

    #[test]
    fn the_data_directory_is_not_open_to_others() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::prepare(&dir.path().join("data")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(data.root()), 0o711);
        assert_eq!(mode(&data.logs()), 0o750);
        assert_eq!(mode(&data.root().join("backups")), 0o750);
        assert_eq!(mode(&data.keys()), 0o700);
    }
}
