//! The canonical encoding of an audit record and the chain hash, exactly as
//! `docs/audit-chain.md` specifies them (version 1). Golden vectors in
//! `tests/fixtures/audit-chain-vectors.json` pin it: any drift fails a test.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The previous hash of the first record.
pub const GENESIS: [u8; 32] = [0u8; 32];
/// The domain-separation prefix of every encoding.
pub const MAGIC: &[u8] = b"plugpos-audit-v1\0";

/// One audit record as stored (its JSON values are the canonical text that was hashed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor_user_id: Option<Uuid>,
    pub actor_username: Option<String>,
    pub actor_role: Option<String>,
    pub workstation_id: Option<String>,
    pub branch_id: Option<Uuid>,
    pub module: String,
    pub entity: String,
    pub entity_id: Option<String>,
    pub action: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
    pub reason_code: Option<String>,
    pub approval_ref: Option<String>,
    pub request_id: Option<String>,
}

/// `at` as encoded: RFC 3339 in UTC with exactly six fractional digits (the stored precision).
pub fn format_time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(text) => {
            out.push(1);
            let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// The canonical encoding of `record` at position `seq`.
pub fn encode(seq: i64, record: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    let uuid = |u: &Option<Uuid>| u.map(|u| u.hyphenated().to_string());
    field(&mut out, Some(&seq.to_string()));
    field(&mut out, Some(&record.id.hyphenated().to_string()));
    field(&mut out, Some(&format_time(&record.at)));
    field(&mut out, uuid(&record.actor_user_id).as_deref());
    field(&mut out, record.actor_username.as_deref());
    field(&mut out, record.actor_role.as_deref());
    field(&mut out, record.workstation_id.as_deref());
    field(&mut out, uuid(&record.branch_id).as_deref());
    field(&mut out, Some(&record.module));
    field(&mut out, Some(&record.entity));
    field(&mut out, record.entity_id.as_deref());
    field(&mut out, Some(&record.action));
    field(&mut out, record.before_json.as_deref());
    field(&mut out, record.after_json.as_deref());
    field(&mut out, record.reason_code.as_deref());
    field(&mut out, record.approval_ref.as_deref());
    field(&mut out, record.request_id.as_deref());
    out
}

/// `SHA-256(prev_hash || encode(seq, record))`.
pub fn chain_hash(prev_hash: &[u8; 32], seq: i64, record: &AuditRecord) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(encode(seq, record));
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Vector {
        seq: i64,
        record: serde_json::Value,
        prev_hash: String,
        encoding: String,
        hash: String,
    }

    fn record(value: &serde_json::Value) -> AuditRecord {
        let text = |k: &str| value[k].as_str().map(str::to_owned);
        let id = |k: &str| value[k].as_str().map(|s| s.parse::<Uuid>().unwrap());
        AuditRecord {
            id: id("id").unwrap(),
            at: DateTime::parse_from_rfc3339(value["at"].as_str().unwrap())
                .unwrap()
                .with_timezone(&Utc),
            actor_user_id: id("actor_user_id"),
            actor_username: text("actor_username"),
            actor_role: text("actor_role"),
            workstation_id: text("workstation_id"),
            branch_id: id("branch_id"),
            module: text("module").unwrap(),
            entity: text("entity").unwrap(),
            entity_id: text("entity_id"),
            action: text("action").unwrap(),
            before_json: text("before_json"),
            after_json: text("after_json"),
            reason_code: text("reason_code"),
            approval_ref: text("approval_ref"),
            request_id: text("request_id"),
        }
    }

    #[test]
    fn golden_vectors() {
        let vectors: Vec<Vector> = serde_json::from_str(include_str!(
            "../../../tests/fixtures/audit-chain-vectors.json"
        ))
        .unwrap();
        assert!(vectors.len() >= 3);
        let mut prev = GENESIS;
        for v in &vectors {
            assert_eq!(hex::encode(prev), v.prev_hash, "seq {}", v.seq);
            let r = record(&v.record);
            assert_eq!(
                hex::encode(encode(v.seq, &r)),
                v.encoding,
                "encoding of seq {}",
                v.seq
            );
            prev = chain_hash(&prev, v.seq, &r);
            assert_eq!(hex::encode(prev), v.hash, "hash of seq {}", v.seq);
        }
    }
}
