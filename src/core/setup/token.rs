//! The one-time setup token in `<data_dir>/setup-token` (mode 0600).
//!
//! Whoever can read the data directory owns the instance anyway; the token proves that the
//! HTTP caller is such a person, and not just anyone on the shop LAN who got there first.

use std::path::PathBuf;

use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::core::data_dir::{DataDir, write_private_file};

/// Makes sure a token file exists (an existing one is kept, so a restart does not invalidate a
/// token an installer already copied) and returns its path.
pub fn ensure(data_dir: &DataDir) -> anyhow::Result<PathBuf> {
    let path = data_dir.setup_token();
    if read(data_dir).is_some() {
        return Ok(path);
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    write_private_file(&path, format!("{}\n", hex::encode(bytes)).as_bytes())?;
    Ok(path)
}

/// The current token, if the file exists and holds one.
fn read(data_dir: &DataDir) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.setup_token()).ok()?;
    let token = text.trim();
    (token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())).then(|| token.to_owned())
}

/// Does `presented` equal the token on disk? Compared in constant time; no file means no match.
pub fn matches(data_dir: &DataDir, presented: &str) -> bool {
    match read(data_dir) {
        Some(token) => token.as_bytes().ct_eq(presented.trim().as_bytes()).into(),
        None => false,
    }
}

/// Deletes the token after a successful setup.
pub fn remove(data_dir: &DataDir) {
    let path = data_dir.setup_token();
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(path = %path.display(), error = %e, "cannot delete the used setup token; delete it by hand");
    }
}
