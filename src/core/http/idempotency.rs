//! Idempotent creates (`Idempotency-Key`): a retried request returns what the first one created,
//! and the same key with another body is refused.
//!
//! The key is claimed by inserting it, inside the create's own transaction, before anything else
//! is written. Two racing retries therefore serialise on the key's primary key: the second waits
//! until the first commits (then it replays the first's result) or rolls back (then it proceeds as
//! the first). A create that fails releases its key with its transaction.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::http::ApiError;

/// The request header.
pub const KEY_HEADER: &str = "idempotency-key";
/// The response header on a replay.
pub static REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The replay marker, `Idempotent-Replayed: true`.
pub fn replayed() -> (HeaderName, HeaderValue) {
    (REPLAYED_HEADER.clone(), HeaderValue::from_static("true"))
}

/// The request's key: 1 to 255 visible ASCII characters. Required where a route says so.
pub fn key(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get(KEY_HEADER) else {
        return Err(ApiError::BadRequest {
            code: "idempotency.key_required",
            detail: "Send an `Idempotency-Key` header (a UUID is a good key) so that a retried request is not recorded twice.".to_owned(),
        });
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::BadRequest {
            code: "idempotency.key_invalid",
            detail: "The `Idempotency-Key` must be 1 to 255 visible ASCII characters.".to_owned(),
        })
}

/// SHA-256 of the body in a canonical form (object keys sorted, no whitespace), so that a retry
/// that re-serialises the same JSON differently still matches.
pub fn request_hash(body: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    canonical(body, &mut out);
    Sha256::digest(&out).to_vec()
}

fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// What claiming a key found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: go on and create `resource_id`.
    New,
    /// A committed request used this key with the same body and created this resource.
    Replay(Uuid),
}

/// Claims `key` in `scope` (e.g. `sales`) for a request with `hash` that will create
/// `resource_id`. Waits for a concurrent holder of the key to finish. The same key with another
/// body is 422 `idempotency.key_reused`.
pub async fn claim(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
    hash: &[u8],
    resource_id: Uuid,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Claim, ApiError> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(hash)
    .bind(resource_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::New);
    }
    let (stored_hash, stored_id): (Vec<u8>, Uuid) = sqlx::query_as(
        "SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_one(conn)
    .await?;
    if stored_hash != hash {
        return Err(ApiError::Unprocessable {
            code: "idempotency.key_reused",
            detail: "This Idempotency-Key was already used for a different request body; use a new key for a new request.".to_owned(),
        });
    }
    Ok(Claim::Replay(stored_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_key_order_and_whitespace_but_not_values() {
        let a: Value =
            serde_json::from_str(r#"{"b": [1, {"y": "2", "x": null}], "a": "1.00"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":"1.00","b":[1,{"x":null,"y":"2"}]}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"a":"1.0","b":[1,{"x":null,"y":"2"}]}"#).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }

    #[test]
    fn keys_are_required_and_checked() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            key(&headers).unwrap_err().code(),
            "idempotency.key_required"
        );
        headers.insert(KEY_HEADER, HeaderValue::from_static("has space"));
        assert_eq!(key(&headers).unwrap_err().code(), "idempotency.key_invalid");
        headers.insert(KEY_HEADER, HeaderValue::from_static("0193-abc"));
        assert_eq!(key(&headers).unwrap(), "0193-abc");
    }
}
