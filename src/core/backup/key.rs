//! The instance's backup key: an age X25519 identity in `<data_dir>/keys/backup-identity.txt`
//! (mode 0600, the same text `age-keygen` writes, so `age -d -i` reads it). Generated at setup;
//! the admin exports it (`plugpos backup export-key`) and keeps it off the machine: without it
//! no backup can be decrypted.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use anyhow::Context;

use crate::core::data_dir::write_private_file;

const FILE: &str = "backup-identity.txt";

/// The identity file in `keys_dir`.
pub fn path(keys_dir: &Path) -> PathBuf {
    keys_dir.join(FILE)
}

/// Creates the identity if there is none; returns whether it created one.
pub fn ensure(keys_dir: &Path, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<bool> {
    let file = path(keys_dir);
    if file.exists() {
        return Ok(false);
    }
    let identity = age::x25519::Identity::generate();
    let text = format!(
        "# created: {}\n# public key: {}\n# plugpos backup key: keep a copy off this machine; without it no backup can be restored\n{}\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        identity.to_public(),
        identity.to_string().expose_secret()
    );
    write_private_file(&file, text.as_bytes())?;
    Ok(true)
}

/// Installs the identity in `text` (an exported key): where there is none, or the same one, or
/// (with `replace`) in place of another, which is kept beside it as
/// `backup-identity.replaced-<time>.txt`. Returns what it did, in a sentence.
pub fn import(
    keys_dir: &Path,
    text: &str,
    replace: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    let identity =
        parse(text).context("the file holds no age identity (an exported backup key)")?;
    let public = identity.to_public().to_string();
    let file = path(keys_dir);
    if let Ok(existing) = export(keys_dir) {
        match parse(&existing) {
            Some(current) if current.to_public().to_string() == public => {
                return Ok(format!("the backup key {public} is already installed"));
            }
            _ if !replace => anyhow::bail!(
                "this data directory has another backup key ({}); pass --replace to install this one (the other is kept beside it)",
                file.display()
            ),
            _ => {
                let kept = keys_dir.join(format!(
                    "backup-identity.replaced-{}.txt",
                    now.format("%Y%m%dT%H%M%SZ")
                ));
                fs::rename(&file, &kept)
                    .with_context(|| format!("cannot keep the old key as {}", kept.display()))?;
            }
        }
    }
    fs::create_dir_all(keys_dir)
        .with_context(|| format!("cannot create {}", keys_dir.display()))?;
    write_private_file(&file, text.as_bytes())?;
    Ok(format!(
        "backup key {public} installed in {} (mode 0600)",
        file.display()
    ))
}

/// The identity file's text (what `export-key` prints).
pub fn export(keys_dir: &Path) -> anyhow::Result<String> {
    let file = path(keys_dir);
    fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read the backup key {} (it is created by setup)",
            file.display()
        )
    })
}

/// The identity, parsed.
pub fn identity(keys_dir: &Path) -> anyhow::Result<age::x25519::Identity> {
    let text = export(keys_dir)?;
    parse(&text).with_context(|| format!("{} holds no age identity", path(keys_dir).display()))
}

/// The identity in an `age-keygen`-style text (comments and blank lines ignored).
pub fn parse(text: &str) -> Option<age::x25519::Identity> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_private_and_parseable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure(dir.path(), crate::shared::clock::Clock::system().now()).unwrap());
        let first = export(dir.path()).unwrap();
        assert!(!ensure(dir.path(), crate::shared::clock::Clock::system().now()).unwrap());
        assert_eq!(export(dir.path()).unwrap(), first, "never replaced");
        let id = identity(dir.path()).unwrap();
        assert!(first.contains(&id.to_public().to_string()));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
