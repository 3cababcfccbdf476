//! Idempotent creates (`Idempotency-Key`): a retried request returns what the first one created,
//! and the same key with another body is refused.
//!
//! A create claims its key ([`CLAIM_CTE`]) in the statement that writes what it creates, so a
//! create that fails releases its key with it. A key that a committed request holds fails the
//! claim ([`is_key_race`]): the caller [`find`]s it and replays that request's result (or refuses
//! another body). Racing retries serialise on the key's primary key: a claim waits for a
//! concurrent holder and, once that commits, fails on the taken key. A create refused before it
//! writes (validation, a closed session) [`find`]s its key before it answers, so a retry of a
//! committed request replays whatever has changed since.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::db::violated_constraint;
use crate::core::http::ApiError;

/// The request header.
pub const KEY_HEADER: &str = "idempotency-key";
/// The response header on a replay.
pub static REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The replay marker, `Idempotent-Replayed: true`.
pub fn replayed() -> (HeaderName, HeaderValue) {
    (REPLAYED_HEADER.clone(), HeaderValue::from_static("true"))
}

/// Marks `response` as the replay of an earlier request's answer.
pub fn mark_replayed(response: &mut axum::response::Response) {
    let (name, value) = replayed();
    response.headers_mut().insert(name, value);
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

/// The request's key when it sent one (creates where a key is optional), else `None`; a bad one
/// is refused like [`key`]'s.
pub fn optional_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.contains_key(KEY_HEADER) {
        true => key(headers).map(Some),
        false => Ok(None),
    }
}

/// The key as stored: the client's key scoped to its `owner` (the caller, and for a sale the
/// register), so that another user reusing a key never gets the first user's result back.
/// Hashed whole (64 hex digits): stored keys differ from their first character, so the key
/// index compares them quickly (a readable `<owner>:` prefix, shared by a till's every key,
/// cost the sales writer measurably; migration 0017 rehashes keys stored in that form).
pub fn scoped(owner: &str, key: &str) -> String {
    let readable = format!("{owner}:{}", hex::encode(Sha256::digest(key.as_bytes())));
    hex::encode(Sha256::digest(readable.as_bytes()))
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

/// A key as a committed request left it.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub request_hash: Vec<u8>,
    /// What that request created.
    pub resource_id: Uuid,
}

impl StoredKey {
    /// A request with `hash` under this key replays the resource the first one created; with
    /// another body it is 422 `idempotency.key_reused`.
    pub fn replay_for(&self, hash: &[u8]) -> Result<Uuid, ApiError> {
        if self.request_hash != hash {
            return Err(key_reused());
        }
        Ok(self.resource_id)
    }
}

/// 422 `idempotency.key_reused`.
pub fn key_reused() -> ApiError {
    ApiError::Unprocessable {
        code: "idempotency.key_reused",
        detail: "This Idempotency-Key was already used for a different request body; use a new key for a new request.".to_owned(),
    }
}

/// The stored key `key` in `scope` (e.g. `sales`), if any.
pub async fn find(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
) -> Result<Option<StoredKey>, sqlx::Error> {
    let row: Option<(Vec<u8>, Uuid)> = sqlx::query_as(
        "SELECT request_hash, resource_id FROM idempotency_keys WHERE scope = $1 AND key = $2",
    )
    .bind(scope)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(request_hash, resource_id)| StoredKey {
        request_hash,
        resource_id,
    }))
}

/// The stored keys among `keys` in `scope`, by key.
pub async fn find_all(
    conn: &mut PgConnection,
    scope: &str,
    keys: &[&str],
) -> Result<HashMap<String, StoredKey>, sqlx::Error> {
    // Not prepared: a generic plan made while the table was small scans it (0.2 ms per call at a
    // few thousand keys, growing); planned per call it is a primary-key lookup.
    let rows: Vec<(String, Vec<u8>, Uuid)> = sqlx::query_as(
        "SELECT key, request_hash, resource_id FROM idempotency_keys WHERE scope = $1 AND key = ANY($2)",
    )
    .bind(scope)
    .bind(keys)
    .persistent(false)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(key, request_hash, resource_id)| {
            (
                key,
                StoredKey {
                    request_hash,
                    resource_id,
                },
            )
        })
        .collect())
}

/// The part of a caller's single statement that claims the keys of what it creates: reads the
/// caller's CTE `keys_in(scope, key, request_hash, resource_id, user_id)` and inserts those keys,
/// in key order, stamped with `$now` (the statement's time: the text is an audited statement's
/// part, see `core::audit::parts`). A key that exists already fails the
/// whole statement with [`is_key_race`]: a retry committed first, so the caller reads the keys
/// ([`find_all`]) and replays instead.
pub const CLAIM_CTE: &str = "keys_claimed AS (INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, user_id, created_at) \
     SELECT scope, key, request_hash, resource_id, user_id, $now FROM keys_in ORDER BY scope, key)";

/// Claims `key` in `scope` for `resource_id` inside the caller's transaction (a create written
/// with an `AuditedTx`, not one statement): `Ok(None)` when claimed, so the create goes on;
/// `Ok(Some(stored))` when a committed request holds it (a racing holder is waited for), so the
/// caller replays `stored` (or refuses another body, [`StoredKey::replay_for`]) and rolls back.
pub async fn claim(
    conn: &mut PgConnection,
    scope: &str,
    key: &str,
    request_hash: &[u8],
    resource_id: Uuid,
    user_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<StoredKey>, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, request_hash, resource_id, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(scope)
    .bind(key)
    .bind(request_hash)
    .bind(resource_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if claimed == 1 {
        return Ok(None);
    }
    find(conn, scope, key).await
}

/// Forgets the keys of `scope` that created `resource_id` (their request hashes are digests of
/// bodies that may hold personal data: an erasure removes them). A retry with such a key after
/// this creates anew, so only an erasure, which ends the resource's life, calls it.
pub async fn forget_resource(
    conn: &mut PgConnection,
    scope: &str,
    resource_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND resource_id = $2")
        .bind(scope)
        .bind(resource_id)
        .execute(conn)
        .await
        .map(drop)
}

/// The optional `Idempotency-Key` of a create written in an [`crate::core::audit::AuditedTx`]:
/// the caller's key in `scope` and the body's digest. The create asks [`CreateKey::earlier`]
/// before it does anything (a retry of a committed request replays it), then
/// [`CreateKey::claim`]s the key inside its transaction (a racing retry that committed first is
/// replayed instead: roll back). A request without a key creates every time.
pub struct CreateKey {
    scope: &'static str,
    key: Option<String>,
    hash: Vec<u8>,
}

impl CreateKey {
    /// The key of `headers` (scoped to the caller `user_id`) for a create in `scope` with `body`.
    pub fn read(
        headers: &HeaderMap,
        user_id: Uuid,
        scope: &'static str,
        body: &Value,
    ) -> Result<CreateKey, ApiError> {
        Ok(CreateKey {
            scope,
            key: optional_key(headers)?.map(|k| scoped(&user_id.to_string(), &k)),
            hash: request_hash(body),
        })
    }

    /// What a committed request with this key created (`None`: a new key, or none); the key
    /// with another body is `422 idempotency.key_reused`.
    pub async fn earlier(&self, conn: &mut PgConnection) -> Result<Option<Uuid>, ApiError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        match find(conn, self.scope, key).await? {
            Some(stored) => stored.replay_for(&self.hash).map(Some),
            None => Ok(None),
        }
    }

    /// Claims the key for `resource_id` in the create's transaction (`conn`): `None` when claimed
    /// (go on), else what the committed request that holds it created (roll back, replay it).
    pub async fn claim(
        &self,
        conn: &mut PgConnection,
        resource_id: Uuid,
        user_id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Uuid>, ApiError> {
        let Some(key) = &self.key else {
            return Ok(None);
        };
        match claim(conn, self.scope, key, &self.hash, resource_id, user_id, now).await? {
            Some(stored) => stored.replay_for(&self.hash).map(Some),
            None => Ok(None),
        }
    }
}

/// Did a statement fail because a key it claimed ([`CLAIM_CTE`]) was committed meanwhile?
pub fn is_key_race(e: &sqlx::Error) -> bool {
    violated_constraint(e) == Some("idempotency_keys_pkey")
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
