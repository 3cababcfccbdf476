//! Personal data in audit records, and how it is forgotten without breaking the chain
//! ("crypto-shredding", docs/audit-chain.md).
//!
//! The chain hashes every record as stored and records are never changed, so a personal value
//! written in clear into a record could never be erased. A module that audits a person (a
//! customer) therefore seals each personal field of its `before`/`after` under a key of that
//! person's own (its *subject*): the stored value is `{"$sealed": "<subject id>.<base64>"}`,
//! XChaCha20-Poly1305 of the value's JSON text with a random 24-byte nonce (the base64 holds nonce,
//! ciphertext and tag) and the subject id's 16 bytes as associated data. The keys live in
//! `audit_subject_keys`, outside the chain. Erasing the person deletes the key: the records keep
//! their bytes (the chain still verifies) but nothing can read the sealed values any more, and
//! readers see `"[erased]"` in their place.
//!
//! The audit log query opens sealed values for readers who may see the field (the module
//! declares it a protected field; readers without the permission never get it, sealed or not).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::write::AuditedTx;

/// The key of a sealed value's object.
pub const SEALED: &str = "$sealed";
/// What a reader sees where a value was sealed under a key erasure destroyed.
pub const ERASED: &str = "[erased]";

const NONCE_LEN: usize = 24;

/// A subject's key.
#[derive(Clone)]
pub struct SubjectKey {
    subject: Uuid,
    key: [u8; 32],
}

impl SubjectKey {
    /// `value` sealed: `{"$sealed": "<subject>.<base64(nonce | ciphertext | tag)>"}`.
    pub fn seal(&self, value: &Value) -> Value {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let plain = value.to_string();
        let sealed = XChaCha20Poly1305::new((&self.key).into())
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: self.subject.as_bytes(),
                },
            )
            // Encryption fails only for messages of gigabytes.
            .unwrap_or_default();
        let text = format!(
            "{}.{}",
            self.subject,
            STANDARD.encode([&nonce[..], &sealed].concat())
        );
        json!({ SEALED: text })
    }

    /// The value sealed in `text` (`<subject>.<base64>`), if it opens with this key.
    fn open(&self, text: &str) -> Option<Value> {
        let (_, data) = text.split_once('.')?;
        let bytes = STANDARD.decode(data).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        let plain = XChaCha20Poly1305::new((&self.key).into())
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: self.subject.as_bytes(),
                },
            )
            .ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// `object` with each of `fields` it holds sealed (the others as they are).
    pub fn seal_fields(&self, object: Value, fields: &[&str]) -> Value {
        let Value::Object(map) = object else {
            return object;
        };
        let sealed: Map<String, Value> = map
            .into_iter()
            .map(|(k, v)| {
                if fields.contains(&k.as_str()) {
                    let sealed = self.seal(&v);
                    (k, sealed)
                } else {
                    (k, v)
                }
            })
            .collect();
        Value::Object(sealed)
    }
}

/// Subject `subject`'s key, made (in the caller's transaction) when it has none. A subject whose
/// key was erased gets a new one: what is sealed from now on is readable until it is erased again.
pub async fn subject_key(tx: &mut AuditedTx, subject: Uuid) -> Result<SubjectKey, sqlx::Error> {
    let mut fresh = [0u8; 32];
    rand::rng().fill_bytes(&mut fresh);
    let key: Vec<u8> = sqlx::query_scalar(
        "WITH made AS (INSERT INTO audit_subject_keys (subject_id, key, created_at) VALUES ($1, $2, now()) \
           ON CONFLICT (subject_id) DO NOTHING RETURNING key) \
         SELECT key FROM made UNION ALL SELECT key FROM audit_subject_keys WHERE subject_id = $1 LIMIT 1",
    )
    .bind(subject)
    .bind(&fresh[..])
    .fetch_one(&mut **tx)
    .await?;
    Ok(SubjectKey {
        subject,
        key: key.try_into().unwrap_or(fresh),
    })
}

/// Destroys subject `subject`'s key, in the caller's transaction: every value sealed for it is
/// unreadable from then on. Answers whether there was one.
pub async fn forget(tx: &mut AuditedTx, subject: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM audit_subject_keys WHERE subject_id = $1")
        .bind(subject)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The subjects whose sealed values appear in `value`.
fn subjects_in(value: &Value, out: &mut Vec<Uuid>) {
    match value {
        Value::Object(map) => {
            if let Some(subject) = sealed_text(map).and_then(|t| t.split_once('.'))
                && let Ok(id) = subject.0.parse()
            {
                out.push(id);
                return;
            }
            map.values().for_each(|v| subjects_in(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| subjects_in(v, out)),
        _ => {}
    }
}

fn sealed_text(map: &Map<String, Value>) -> Option<&str> {
    match (map.len(), map.get(SEALED)) {
        (1, Some(Value::String(text))) => Some(text),
        _ => None,
    }
}

/// `value` with every sealed value opened with `keys`, or [`ERASED`] where its key is gone.
fn open_in(value: &mut Value, keys: &[SubjectKey]) {
    match value {
        Value::Object(map) => {
            if let Some(text) = sealed_text(map) {
                let subject = text
                    .split_once('.')
                    .and_then(|(s, _)| s.parse::<Uuid>().ok());
                let opened = keys
                    .iter()
                    .find(|k| Some(k.subject) == subject)
                    .and_then(|k| k.open(text));
                *value = opened.unwrap_or_else(|| Value::String(ERASED.to_owned()));
                return;
            }
            map.values_mut().for_each(|v| open_in(v, keys));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| open_in(v, keys)),
        _ => {}
    }
}

/// Opens the sealed values of the JSON texts in `texts` (each rewritten only when it held one).
pub async fn open_all(
    conn: &mut PgConnection,
    texts: &mut [&mut Option<String>],
) -> Result<(), sqlx::Error> {
    let mut parsed: Vec<Option<Value>> = Vec::with_capacity(texts.len());
    let mut subjects = Vec::new();
    for text in texts.iter() {
        let value = text
            .as_deref()
            .filter(|t| t.contains(SEALED))
            .and_then(|t| serde_json::from_str::<Value>(t).ok());
        if let Some(v) = &value {
            subjects_in(v, &mut subjects);
        }
        parsed.push(value);
    }
    if subjects.is_empty() {
        return Ok(());
    }
    subjects.sort_unstable();
    subjects.dedup();
    let rows: Vec<(Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT subject_id, key FROM audit_subject_keys WHERE subject_id = ANY($1)")
            .bind(&subjects)
            .fetch_all(conn)
            .await?;
    let keys: Vec<SubjectKey> = rows
        .into_iter()
        .filter_map(|(subject, key)| {
            Some(SubjectKey {
                subject,
                key: key.try_into().ok()?,
            })
        })
        .collect();
    for (text, value) in texts.iter_mut().zip(parsed) {
        if let Some(mut value) = value {
            open_in(&mut value, &keys);
            **text = Some(value.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SubjectKey {
        SubjectKey {
            subject: Uuid::now_v7(),
            key: [7; 32],
        }
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_only() {
        let k = key();
        let sealed = k.seal(&json!("Anna Müller"));
        let text = sealed[SEALED].as_str().unwrap();
        assert!(!text.contains("Anna"));
        assert!(text.starts_with(&k.subject.to_string()));
        assert_eq!(k.open(text), Some(json!("Anna Müller")));
        let other = SubjectKey {
            subject: k.subject,
            key: [8; 32],
        };
        assert_eq!(other.open(text), None, "another key does not open it");
        let moved = SubjectKey {
            subject: Uuid::now_v7(),
            key: [7; 32],
        };
        assert_eq!(
            moved.open(text),
            None,
            "nor the same key for another subject"
        );
    }

    #[test]
    fn only_the_named_fields_are_sealed_and_erased_ones_read_as_erased() {
        let k = key();
        let record = k.seal_fields(
            json!({"name": "Anna", "email": null, "customer_group": "staff"}),
            &["name", "email"],
        );
        assert_eq!(record["customer_group"], "staff");
        assert!(record["name"][SEALED].is_string());
        assert!(record["email"][SEALED].is_string(), "null is sealed too");
        let mut opened = record.clone();
        open_in(&mut opened, std::slice::from_ref(&k));
        assert_eq!(
            opened,
            json!({"name": "Anna", "email": null, "customer_group": "staff"})
        );
        let mut erased = record;
        open_in(&mut erased, &[]);
        assert_eq!(erased["name"], ERASED);
        assert_eq!(erased["customer_group"], "staff");
    }
}
