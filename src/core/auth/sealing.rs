//! Secrets the server must read back (TOTP seeds) are stored sealed: XChaCha20-Poly1305 under a
//! key in `<data_dir>/keys/mfa-secrets.key` (created 0600 on first use), with the owning row's id
//! as associated data, so a copy of the database alone (a stolen backup file decrypted, a
//! `SELECT` by someone with database access) does not give anyone a user's second factor, and a
//! sealed secret moved to another user's row does not open.
//!
//! Stored form: `PPS1` | 24-byte nonce | ciphertext and tag. A secret stored before sealing (the
//! raw 20 bytes) still opens as it is, and is sealed the next time it is used.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::core::data_dir::write_private_file;

const KEY_FILE: &str = "mfa-secrets.key";
const MAGIC: &[u8; 4] = b"PPS1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Seals and opens secrets with the instance's key, read (or made) on first use.
pub struct SecretSealing {
    keys_dir: PathBuf,
    key: Mutex<Option<[u8; 32]>>,
}

impl SecretSealing {
    /// Sealing with the key in `keys_dir` (read when first needed).
    pub fn new(keys_dir: &Path) -> SecretSealing {
        SecretSealing {
            keys_dir: keys_dir.to_owned(),
            key: Mutex::new(None),
        }
    }

    /// A sealing with `key` (tests).
    pub fn with_key(key: [u8; 32]) -> SecretSealing {
        SecretSealing {
            keys_dir: PathBuf::new(),
            key: Mutex::new(Some(key)),
        }
    }

    fn cipher(&self) -> anyhow::Result<XChaCha20Poly1305> {
        let mut key = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if key.is_none() {
            *key = Some(load_or_create(&self.keys_dir.join(KEY_FILE))?);
        }
        let bytes = key.as_ref().context("the sealing key is not loaded")?;
        Ok(XChaCha20Poly1305::new(bytes.into()))
    }

    /// `secret` sealed for the row `owner`.
    pub fn seal(&self, secret: &[u8], owner: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher()?
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: owner,
                },
            )
            .map_err(|_| anyhow::anyhow!("cannot seal the secret"))?;
        Ok([&MAGIC[..], &nonce, &sealed].concat())
    }

    /// The secret in `stored` (sealed for `owner`, or stored before sealing).
    pub fn open(&self, stored: &[u8], owner: &[u8]) -> anyhow::Result<Vec<u8>> {
        if !is_sealed(stored) {
            return Ok(stored.to_vec());
        }
        let (nonce, sealed) = stored[MAGIC.len()..].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().context("a sealed secret's nonce")?;
        self.cipher()?
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: owner,
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "a sealed secret does not open with {} (was the data directory's keys/ lost or replaced?)",
                    self.keys_dir.join(KEY_FILE).display()
                )
            })
    }
}

/// Is `stored` sealed (else it was stored before sealing)?
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.len() > MAGIC.len() + NONCE_LEN + TAG_LEN && stored.starts_with(MAGIC)
}

/// The key in `path`, made only when there is no such file: a key that cannot be read (its
/// permissions, a disk error) is an error, never replaced (every sealed seed would be lost).
fn load_or_create(path: &Path) -> anyhow::Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .with_context(|| format!("{} is damaged", path.display()))?;
            return <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    write_private_file(path, format!("{}\n", hex::encode(key)).as_bytes())?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_for_its_owner_and_key() {
        let sealing = SecretSealing::with_key([1; 32]);
        let secret = [7u8; 20];
        let sealed = sealing.seal(&secret, b"user-a").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(20).any(|w| w == secret));
        assert_eq!(sealing.open(&sealed, b"user-a").unwrap(), secret);
        assert!(
            sealing.open(&sealed, b"user-b").is_err(),
            "moved to another row"
        );
        let other_key = SecretSealing::with_key([2; 32]);
        assert!(other_key.open(&sealed, b"user-a").is_err());
        // A secret stored before sealing opens as it is.
        assert_eq!(sealing.open(&secret, b"user-a").unwrap(), secret);
    }

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let sealed = SecretSealing::new(dir.path()).seal(b"seed", b"u").unwrap();
        let path = dir.path().join(KEY_FILE);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = SecretSealing::new(dir.path());
        assert_eq!(again.open(&sealed, b"u").unwrap(), b"seed");
    }
}
