//! Signed checkpoints: an ed25519 signature over `(seq, head hash, time)`. Saved outside the
//! database, a checkpoint proves what the chain held at that point, so a truncated tail or a
//! chain rewritten from scratch (which recomputation alone cannot see) is detected.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::core::audit::encoding::{GENESIS, format_time};
use crate::core::data_dir::write_private_file;
use crate::shared::ids::new_id;

const KEY_FILE: &str = "audit-signing.key";
const MAGIC: &[u8] = b"plugpos-audit-checkpoint-v1\0";

/// A signed statement of the chain head (what `POST /api/v1/audit/checkpoints` returns and
/// `plugpos audit verify --checkpoint FILE` reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Checkpoint {
    /// The last chained record covered (0 for an empty chain).
    pub seq: i64,
    /// Hex SHA-256 of that record (64 zeros for an empty chain).
    pub hash: String,
    /// When it was signed, in the encoded form (`YYYY-MM-DDTHH:MM:SS.ffffffZ`).
    pub at: String,
    /// Hex ed25519 public key.
    pub public_key: String,
    /// Hex ed25519 signature over the message of `docs/audit-chain.md`.
    pub signature: String,
}

/// The bytes that are signed: magic, seq (8 bytes big-endian), hash (32 bytes), time text.
pub fn message(seq: i64, hash: &[u8; 32], at: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 40 + at.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(hash);
    out.extend_from_slice(at.as_bytes());
    out
}

/// Loads `<keys>/audit-signing.key` (hex seed, 0600), creating it on first use.
pub fn load_or_create_key(keys_dir: &Path) -> anyhow::Result<SigningKey> {
    if let Some(key) = load_key(keys_dir)? {
        return Ok(key);
    }
    let path = keys_dir.join(KEY_FILE);
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    write_private_file(&path, format!("{}\n", hex::encode(seed)).as_bytes())?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Loads `<keys>/audit-signing.key` if it exists (setup creates it); never creates one, for
/// signatures that must be checkable against the key earlier ones were made with.
pub fn load_key(keys_dir: &Path) -> anyhow::Result<Option<SigningKey>> {
    let path = keys_dir.join(KEY_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is damaged", path.display()))?;
        return Ok(Some(SigningKey::from_bytes(&bytes)));
    }
    Ok(None)
}

/// The public key of this instance, if its signing key exists.
pub fn public_key(keys_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(keys_dir.join(KEY_FILE)).ok()?;
    let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
    Some(hex::encode(
        SigningKey::from_bytes(&bytes).verifying_key().to_bytes(),
    ))
}

/// Signs the current head and stores the checkpoint.
pub async fn create(
    pool: &PgPool,
    key: &SigningKey,
    now: DateTime<Utc>,
) -> anyhow::Result<Checkpoint> {
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    let (seq, hash) = match head {
        Some((seq, hash)) => (
            seq,
            <[u8; 32]>::try_from(hash.as_slice()).context("a chain hash is not 32 bytes")?,
        ),
        None => (0, GENESIS),
    };
    let at = now.trunc_subsecs(6);
    let at_text = format_time(&at);
    let signature = key.sign(&message(seq, &hash, &at_text));
    let public = key.verifying_key().to_bytes();
    sqlx::query("INSERT INTO audit_checkpoints (id, seq, hash, at, public_key, signature) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(new_id())
        .bind(seq)
        .bind(&hash[..])
        .bind(at)
        .bind(&public[..])
        .bind(&signature.to_bytes()[..])
        .execute(pool)
        .await?;
    Ok(Checkpoint {
        seq,
        hash: hex::encode(hash),
        at: at_text,
        public_key: hex::encode(public),
        signature: hex::encode(signature.to_bytes()),
    })
}

/// Every stored checkpoint, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Checkpoint>, sqlx::Error> {
    type Row = (i64, Vec<u8>, DateTime<Utc>, Vec<u8>, Vec<u8>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, hash, at, public_key, signature FROM audit_checkpoints ORDER BY at, id",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, hash, at, public_key, signature)| Checkpoint {
            seq,
            hash: hex::encode(hash),
            at: format_time(&at),
            public_key: hex::encode(public_key),
            signature: hex::encode(signature),
        })
        .collect())
}

/// Checks the checkpoint's own signature; the error says what is wrong.
pub fn check_signature(checkpoint: &Checkpoint) -> Result<(), String> {
    let key: [u8; 32] = hex::decode(&checkpoint.public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the checkpoint's public key is not 32 hex bytes")?;
    let key =
        VerifyingKey::from_bytes(&key).map_err(|_| "the checkpoint's public key is invalid")?;
    let signature: [u8; 64] = hex::decode(&checkpoint.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the checkpoint's signature is not 64 hex bytes")?;
    let hash: [u8; 32] = hex::decode(&checkpoint.hash)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the checkpoint's hash is not 32 hex bytes")?;
    key.verify_strict(
        &message(checkpoint.seq, &hash, &checkpoint.at),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| "the checkpoint's signature does not match its content".to_owned())
}

/// The head of the chain now: the last chained record's seq and hash (0 and the genesis hash
/// for an empty chain). Records committed but not chained yet are not in it.
pub async fn head(conn: &mut sqlx::PgConnection) -> anyhow::Result<(i64, [u8; 32])> {
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .fetch_optional(conn)
            .await?;
    Ok(match head {
        Some((seq, hash)) => (
            seq,
            <[u8; 32]>::try_from(hash.as_slice()).context("a chain hash is not 32 bytes")?,
        ),
        None => (0, GENESIS),
    })
}

/// Checks an ed25519 `signature` by `public_key` over `message` (a closing's, say).
pub fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(signature) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    VerifyingKey::from_bytes(&key)
        .and_then(|k| k.verify_strict(message, &Signature::from_bytes(&signature)))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_edits_fail() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let at = "2026-11-22T20:00:00.000000Z".to_owned();
        let hash = [3u8; 32];
        let checkpoint = Checkpoint {
            seq: 12,
            hash: hex::encode(hash),
            at: at.clone(),
            public_key: hex::encode(key.verifying_key().to_bytes()),
            signature: hex::encode(key.sign(&message(12, &hash, &at)).to_bytes()),
        };
        check_signature(&checkpoint).unwrap();
        let moved = Checkpoint {
            seq: 13,
            ..checkpoint.clone()
        };
        assert!(check_signature(&moved).is_err());
    }
}
