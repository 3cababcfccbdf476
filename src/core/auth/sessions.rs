//! Sessions and their refresh tokens (storage). A session is one login; its refresh tokens
//! form one family, each used once.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::auth::tokens;
use crate::core::security::events::Origin;
use crate::shared::ids::new_id;

/// Why a session ended (stored in `sessions.end_reason`).
#[derive(Debug, Clone, Copy)]
pub enum EndReason {
    Logout,
    RefreshReused,
    SessionLimit,
    PasswordChanged,
    Disabled,
    /// Too many wrong passwords (the account is locked).
    Locked,
    /// The device (till) it was opened on was revoked.
    DeviceRevoked,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::RefreshReused => "refresh_reused",
            EndReason::SessionLimit => "session_limit",
            EndReason::PasswordChanged => "password_changed",
            EndReason::Disabled => "user_disabled",
            EndReason::Locked => "account_locked",
            EndReason::DeviceRevoked => "device_revoked",
        }
    }
}

/// Opens a session for `user` and returns it with its first refresh token.
pub async fn open(
    conn: &mut PgConnection,
    user: Uuid,
    security_stamp: Uuid,
    origin: &Origin,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<(Uuid, String), sqlx::Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO sessions (id, user_id, security_stamp, workstation_id, ip, user_agent, created_at, last_used_at, expires_at, device_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9)",
    )
    .bind(id)
    .bind(user)
    .bind(security_stamp)
    .bind(origin.workstation_id.as_deref())
    .bind(origin.ip)
    .bind(origin.user_agent.as_deref())
    .bind(now)
    .bind(expires_at)
    .bind(origin.device_id)
    .execute(&mut *conn)
    .await?;
    let token = add_refresh_token(conn, id, now).await?;
    Ok((id, token))
}

/// Adds a new refresh token to `session` and returns it (only its hash is stored).
pub async fn add_refresh_token(
    conn: &mut PgConnection,
    session: Uuid,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let (token, hash) = tokens::new_refresh_token();
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES ($1, $2, $3)",
    )
    .bind(&hash[..])
    .bind(session)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(token)
}

/// Ends a session (no effect if it already ended).
pub async fn end(
    conn: &mut PgConnection,
    session: Uuid,
    reason: EndReason,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL",
    )
    .bind(session)
    .bind(now)
    .bind(reason.as_str())
    .execute(conn)
    .await
    .map(|_| ())
}

/// Ends every open session of `user`.
pub async fn end_all(
    conn: &mut PgConnection,
    user: Uuid,
    reason: EndReason,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE user_id = $1 AND ended_at IS NULL")
        .bind(user)
        .bind(now)
        .bind(reason.as_str())
        .execute(conn)
        .await
        .map(|_| ())
}

/// Ends every open session opened on `device`; returns how many.
pub async fn end_on_device(
    conn: &mut PgConnection,
    device: Uuid,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    sqlx::query("UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE device_id = $1 AND ended_at IS NULL")
        .bind(device)
        .bind(now)
        .bind(EndReason::DeviceRevoked.as_str())
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
}

/// The user's live sessions (not ended, not expired), oldest first.
pub async fn live(
    conn: &mut PgConnection,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.user_id = $1 AND s.ended_at IS NULL AND s.expires_at > $2 AND s.security_stamp = u.security_stamp \
         ORDER BY s.created_at, s.id",
    )
    .bind(user)
    .bind(now)
    .fetch_all(conn)
    .await
}
