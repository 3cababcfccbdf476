//! Integrations: API keys for the shop's other systems (accounting, a web shop). A key is
//! `pk_` + 32 random bytes, shown once at creation and kept only as its SHA-256 (with its first
//! characters, `prefix`, to recognise it by). `Authorization: Bearer pk_...` authenticates as the
//! key: it acts for the user who made it, with the permissions it was given (at most that user's
//! when it was made), and stops working when revoked, expired, or when its maker is disabled.
//! Whatever it writes is audited with the key as the actor (`api-key:<prefix>`); its last use
//! (time and address) is kept.

pub mod http;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::state::AppState;

pub const READ: &str = "administration.integrations.read";
pub const MANAGE: &str = "administration.integrations.manage";

/// Every key starts with it (and so is told from an access token, and redacted by shape).
pub const KEY_PREFIX: &str = "pk_";
/// A key's last use is written at most this often.
const USE_EVERY: Duration = Duration::seconds(60);
/// Keys kept in memory at most.
const KEY_CACHE: usize = 1_000;

/// A new key and its stored hash.
pub fn new_key() -> (String, [u8; 32]) {
    crate::shared::secret::new(KEY_PREFIX)
}

/// The stored form of a key.
pub fn key_hash(key: &str) -> [u8; 32] {
    crate::shared::secret::digest(key.trim())
}

/// What a key is shown by: `pk_` and its next eight characters.
pub fn prefix(key: &str) -> String {
    key.chars().take(KEY_PREFIX.len() + 8).collect()
}

/// A key as the API shows it (never the key itself).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// `pk_` and the key's next eight characters.
    pub prefix: String,
    pub permissions: Vec<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// The address of its last use.
    pub last_used_ip: Option<String>,
}

const KEY_COLUMNS: &str = "k.id, k.name, k.prefix, k.permissions, k.created_by, k.created_at, k.expires_at, \
     k.revoked_at, u.last_used_at, host(u.last_used_ip) AS last_used_ip";

/// A key as authentication needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyAuth {
    pub id: Uuid,
    pub prefix: String,
    pub name: String,
    pub permissions: Vec<String>,
    pub created_by: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    /// Its maker is disabled: the key stops with them.
    pub maker_disabled: bool,
}

/// The key `key` (cached until the keys, users or roles change).
pub async fn by_key(state: &AppState, key: &str) -> Result<Option<Arc<KeyAuth>>, sqlx::Error> {
    let hash = key_hash(key);
    state
        .cache::<[u8; 32], Arc<KeyAuth>>(KEY_CACHE)
        .get_or_read(hash, || async {
            let row: Option<KeyAuth> = sqlx::query_as(
                // The key's permissions that its maker still holds: a maker who loses one takes
                // it from their keys too.
                "SELECT k.id, k.prefix, k.name, \
                        ARRAY(SELECT p FROM unnest(k.permissions) p WHERE p IN ( \
                              SELECT rp.permission FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
                              WHERE ur.user_id = k.created_by)) AS permissions, \
                        k.created_by, k.expires_at, \
                        k.revoked_at IS NOT NULL AS revoked, u.disabled_at IS NOT NULL AS maker_disabled \
                 FROM api_keys k JOIN users u ON u.id = k.created_by WHERE k.key_hash = $1",
            )
            .bind(&hash[..])
            .fetch_optional(state.pool())
            .await?;
            Ok::<_, sqlx::Error>(row.map(Arc::new))
        })
        .await
}

/// Notes a use of key `id` from `ip` (written at most once a minute per key).
pub async fn note_use(
    pool: &PgPool,
    id: Uuid,
    ip: Option<std::net::IpAddr>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_key_usage AS u (key_id, last_used_at, last_used_ip) VALUES ($1, $2, $3) \
         ON CONFLICT (key_id) DO UPDATE SET last_used_at = EXCLUDED.last_used_at, last_used_ip = EXCLUDED.last_used_ip \
         WHERE u.last_used_at <= $4 OR u.last_used_ip IS DISTINCT FROM EXCLUDED.last_used_ip",
    )
    .bind(id)
    .bind(now)
    .bind(ip)
    .bind(now - USE_EVERY)
    .execute(pool)
    .await
    .map(drop)
}

/// Stores a new key.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    key: &str,
    permissions: &[String],
    by: Uuid,
    now: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, name, prefix, key_hash, permissions, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(name)
    .bind(prefix(key))
    .bind(&key_hash(key)[..])
    .bind(permissions)
    .bind(by)
    .bind(now)
    .bind(expires_at)
    .execute(conn)
    .await
    .map(drop)
}

/// Key `id`.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<ApiKey>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id WHERE k.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Every key, by id (oldest first).
pub async fn list(conn: &mut PgConnection) -> Result<Vec<ApiKey>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id ORDER BY k.id"
    )))
    .fetch_all(conn)
    .await
}

/// Revokes key `id` (`false`: it was already).
pub async fn revoke(
    conn: &mut PgConnection,
    id: Uuid,
    by: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .bind(by)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_long_random_hashed_and_shown_by_its_prefix() {
        let (a, hash) = new_key();
        let (b, _) = new_key();
        assert_ne!(a, b);
        assert!(a.starts_with("pk_") && a.len() == 3 + 43, "{a}");
        assert_eq!(key_hash(&format!("{a}\n")), hash);
        assert_eq!(prefix(&a).len(), 11);
        assert!(a.starts_with(&prefix(&a)));
    }
}
