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
    let mut out = [0u8; 27];
    write_time(&mut out, at);
    String::from_utf8_lossy(&out).into_owned()
}

/// Writes `YYYY-MM-DDTHH:MM:SS.ffffffZ` without allocating (verification formats millions).
fn write_time(out: &mut [u8; 27], at: &DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    fn digits(out: &mut [u8], mut value: u32) {
        for slot in out.iter_mut().rev() {
            // A decimal digit always fits in a u8.
            *slot = b'0' + u8::try_from(value % 10).unwrap_or(0);
            value /= 10;
        }
    }
    let year = u32::try_from(at.year()).unwrap_or(0);
    digits(&mut out[0..4], year);
    out[4] = b'-';
    digits(&mut out[5..7], at.month());
    out[7] = b'-';
    digits(&mut out[8..10], at.day());
    out[10] = b'T';
    digits(&mut out[11..13], at.hour());
    out[13] = b':';
    digits(&mut out[14..16], at.minute());
    out[16] = b':';
    digits(&mut out[17..19], at.second());
    out[19] = b'.';
    digits(&mut out[20..26], at.nanosecond() / 1000);
    out[26] = b'Z';
}

/// A record's fields, borrowed (what the encoding reads).
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor_user_id: Option<Uuid>,
    pub actor_username: Option<&'a str>,
    pub actor_role: Option<&'a str>,
    pub workstation_id: Option<&'a str>,
    pub branch_id: Option<Uuid>,
    pub module: &'a str,
    pub entity: &'a str,
    pub entity_id: Option<&'a str>,
    pub action: &'a str,
    pub before_json: Option<&'a str>,
    pub after_json: Option<&'a str>,
    pub reason_code: Option<&'a str>,
    pub approval_ref: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

impl AuditRecord {
    /// The record's fields, borrowed.
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            id: self.id,
            at: self.at,
            actor_user_id: self.actor_user_id,
            actor_username: self.actor_username.as_deref(),
            actor_role: self.actor_role.as_deref(),
            workstation_id: self.workstation_id.as_deref(),
            branch_id: self.branch_id,
            module: &self.module,
            entity: &self.entity,
            entity_id: self.entity_id.as_deref(),
            action: &self.action,
            before_json: self.before_json.as_deref(),
            after_json: self.after_json.as_deref(),
            reason_code: self.reason_code.as_deref(),
            approval_ref: self.approval_ref.as_deref(),
            request_id: self.request_id.as_deref(),
        }
    }
}

fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => out.push(0),
        Some(bytes) => {
            out.push(1);
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
}

/// Appends the canonical encoding of `record` at position `seq` to `out`.
pub fn encode_into(out: &mut Vec<u8>, seq: i64, record: &RecordRef<'_>) {
    let mut uuid_buf = [0u8; 36];
    let mut uuid = |out: &mut Vec<u8>, u: Option<Uuid>| match u {
        Some(u) => field(
            out,
            Some(u.hyphenated().encode_lower(&mut uuid_buf).as_bytes()),
        ),
        None => field(out, None),
    };
    let text = |out: &mut Vec<u8>, t: Option<&str>| field(out, t.map(str::as_bytes));
    out.extend_from_slice(MAGIC);
    field(out, Some(seq.to_string().as_bytes()));
    uuid(out, Some(record.id));
    let mut time = [0u8; 27];
    write_time(&mut time, &record.at);
    field(out, Some(&time));
    uuid(out, record.actor_user_id);
    text(out, record.actor_username);
    text(out, record.actor_role);
    text(out, record.workstation_id);
    uuid(out, record.branch_id);
    text(out, Some(record.module));
    text(out, Some(record.entity));
    text(out, record.entity_id);
    text(out, Some(record.action));
    text(out, record.before_json);
    text(out, record.after_json);
    text(out, record.reason_code);
    text(out, record.approval_ref);
    text(out, record.request_id);
}

/// The canonical encoding of `record` at position `seq`.
pub fn encode(seq: i64, record: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_into(&mut out, seq, &record.as_ref());
    out
}

/// `SHA-256(prev_hash || encode(seq, record))`.
pub fn chain_hash(prev_hash: &[u8; 32], seq: i64, record: &AuditRecord) -> [u8; 32] {
    let mut buf = Vec::with_capacity(256);
    chain_hash_with(&mut buf, prev_hash, seq, &record.as_ref())
}

/// [`chain_hash`] reusing `buf` (cleared first) for the encoding.
pub fn chain_hash_with(
    buf: &mut Vec<u8>,
    prev_hash: &[u8; 32],
    seq: i64,
    record: &RecordRef<'_>,
) -> [u8; 32] {
    buf.clear();
    encode_into(buf, seq, record);
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(&buf[..]);
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
