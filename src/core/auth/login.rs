//! The login, refresh, logout and password-change flows.

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::Authenticated;
use crate::core::auth::sessions::{self, EndReason};
use crate::core::auth::throttle::{self, Gate};
use crate::core::auth::{mfa, password, tokens};
use crate::core::config::SessionLimitPolicy;
use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::security::events::{self, EventKind, Origin, SecurityEvent};
use crate::core::state::AppState;

/// The second factor sent with a login, if any.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecondFactor<'a> {
    pub totp_code: Option<&'a str>,
    pub recovery_code: Option<&'a str>,
}

/// Tokens handed out by a login or a refresh.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub user_id: Uuid,
    pub username: String,
    pub roles: Vec<String>,
    pub password_change_required: bool,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    username: String,
    password_hash: String,
    disabled_at: Option<DateTime<Utc>>,
    password_change_required: bool,
    security_stamp: Uuid,
}

async fn event(
    conn: &mut PgConnection,
    kind: EventKind,
    user: Option<Uuid>,
    username: &str,
    origin: &Origin,
    details: serde_json::Value,
) -> Result<(), ApiError> {
    events::record(
        conn,
        SecurityEvent {
            kind,
            user_id: user,
            username: Some(username),
            origin,
            details,
        },
    )
    .await?;
    Ok(())
}

/// Username + password login. Unknown users cost the same hashing time and get the same answer.
pub async fn login(
    state: &AppState,
    username: &str,
    password: SecretString,
    second: SecondFactor<'_>,
    origin: &Origin,
) -> Result<Issued, ApiError> {
    let key = throttle::key(username);
    let mut conn = state.pool().acquire().await?;
    pass_gate(&mut conn, &key, origin, state.clock().now()).await?;
    let user = check_password(state, &mut conn, &key, password, origin).await?;
    let now = state.clock().now();
    check_second_factor(state, &mut conn, &user, &key, second, origin, now).await?;
    throttle::clear(&mut conn, &key).await?;
    if user.disabled_at.is_some() {
        event(
            &mut conn,
            EventKind::LoginFailed,
            Some(user.id),
            &user.username,
            origin,
            json!({"reason": "disabled"}),
        )
        .await?;
        return Err(ApiError::UserDisabled);
    }
    let (session, refresh_token, expires_at) =
        open_session(state, &mut conn, &user, origin, now).await?;
    let roles = role_names(&mut conn, user.id).await?;
    issue(
        state,
        user.id,
        user.username,
        session,
        refresh_token,
        roles,
        user.password_change_required,
        now,
        expires_at,
    )
}

/// Refuses (and records) a login while the username is throttled or locked.
async fn pass_gate(
    conn: &mut PgConnection,
    key: &str,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let (until, locked) = match throttle::gate(conn, key, now).await? {
        Gate::Open => return Ok(()),
        Gate::Throttled { until } => (until, false),
        Gate::Locked { until } => (until, true),
    };
    let details = match locked {
        true => json!({"until": until, "locked": true}),
        false => json!({"until": until}),
    };
    event(conn, EventKind::LoginThrottled, None, key, origin, details).await?;
    let retry_after_secs = throttle::seconds_until(until, now);
    Err(match locked {
        true => ApiError::Locked { retry_after_secs },
        false => ApiError::Throttled { retry_after_secs },
    })
}

/// The user whose password this is; a wrong password (or an unknown user, hashed all the same)
/// is counted towards throttling and answered `auth.invalid_credentials`.
async fn check_password(
    state: &AppState,
    conn: &mut PgConnection,
    key: &str,
    password: SecretString,
    origin: &Origin,
) -> Result<UserRow, ApiError> {
    let user: Option<UserRow> = sqlx::query_as(
        "SELECT id, username, password_hash, disabled_at, password_change_required, security_stamp \
         FROM users WHERE lower(username) = $1",
    )
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    let valid = match &user {
        Some(user) => {
            state
                .hashing()
                .verify(password, user.password_hash.clone())
                .await?
        }
        None => state.hashing().verify_unknown_user(password).await?,
    };
    if let Some(user) = user.filter(|_| valid) {
        return Ok(user);
    }
    let user_id: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE lower(username) = $1")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
    let failed = FailedLogin {
        key,
        user_id,
        username: key,
        origin,
        now: state.clock().now(),
    };
    count_failure(conn, state, failed, json!({"reason": "password"})).await?;
    Err(ApiError::InvalidCredentials)
}

/// The second factor, when the user has one: a wrong code counts like a wrong password; a
/// recovery code used is recorded.
async fn check_second_factor(
    state: &AppState,
    conn: &mut PgConnection,
    user: &UserRow,
    key: &str,
    second: SecondFactor<'_>,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let Some(factor) = mfa::second_factor(conn, user.id).await? else {
        return Ok(());
    };
    let ok = mfa::check_login(
        conn,
        user.id,
        &user.username,
        factor,
        second.totp_code,
        second.recovery_code,
        now,
    )
    .await?;
    if !ok {
        let failed = FailedLogin {
            key,
            user_id: Some(user.id),
            username: &user.username,
            origin,
            now,
        };
        count_failure(conn, state, failed, json!({"reason": "second_factor"})).await?;
        return Err(ApiError::MfaInvalid);
    }
    if second.totp_code.is_none() {
        event(
            conn,
            EventKind::MfaChanged,
            Some(user.id),
            &user.username,
            origin,
            json!({"recovery_code_used": true}),
        )
        .await?;
    }
    Ok(())
}

/// Opens the user's session (ending the oldest, or refusing, at the concurrent-session limit)
/// and records the login: its id, refresh token and expiry.
async fn open_session(
    state: &AppState,
    conn: &mut PgConnection,
    user: &UserRow,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<(Uuid, String, DateTime<Utc>), ApiError> {
    let config = &state.config().auth;
    let mut tx = conn.begin().await?;
    let live = sessions::live(&mut tx, user.id, now).await?;
    let max = usize::try_from(config.max_sessions_per_user).unwrap_or(usize::MAX);
    if live.len() >= max {
        match config.session_limit {
            SessionLimitPolicy::RefuseNew => {
                drop(tx);
                event(
                    conn,
                    EventKind::LoginFailed,
                    Some(user.id),
                    &user.username,
                    origin,
                    json!({"reason": "session_limit"}),
                )
                .await?;
                return Err(ApiError::SessionLimit);
            }
            SessionLimitPolicy::EndOldest => {
                for session in &live[..=live.len() - max] {
                    sessions::end(&mut tx, *session, EndReason::SessionLimit, now).await?;
                }
            }
        }
    }
    let expires_at =
        now + Duration::hours(i64::try_from(config.session_lifetime_hours).unwrap_or(24));
    let (session, refresh_token) = sessions::open(
        &mut tx,
        user.id,
        user.security_stamp,
        origin,
        now,
        expires_at,
    )
    .await?;
    event(
        &mut tx,
        EventKind::LoginSucceeded,
        Some(user.id),
        &user.username,
        origin,
        json!({"session_id": session}),
    )
    .await?;
    tx.commit().await?;
    Ok((session, refresh_token, expires_at))
}

/// A failed login attempt, for counting and recording.
struct FailedLogin<'a> {
    key: &'a str,
    user_id: Option<Uuid>,
    username: &'a str,
    origin: &'a Origin,
    now: DateTime<Utc>,
}

/// Counts a failed attempt towards throttling and lockout and records it (and a lockout).
/// Counts a failed attempt (and records it); answers whether it locked the account.
async fn count_failure(
    conn: &mut PgConnection,
    state: &AppState,
    failed: FailedLogin<'_>,
    mut details: serde_json::Value,
) -> Result<bool, ApiError> {
    let failure = throttle::fail(conn, failed.key, failed.now, &state.config().auth).await?;
    if let Some(map) = details.as_object_mut() {
        map.insert("consecutive_failures".to_owned(), json!(failure.failures));
    }
    event(
        conn,
        EventKind::LoginFailed,
        failed.user_id,
        failed.username,
        failed.origin,
        details,
    )
    .await?;
    if let Some(until) = failure.locked_until {
        event(
            conn,
            EventKind::AccountLocked,
            failed.user_id,
            failed.username,
            failed.origin,
            json!({"until": until}),
        )
        .await?;
    }
    Ok(failure.locked_until.is_some())
}

async fn role_names(conn: &mut PgConnection, user: Uuid) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = $1 ORDER BY r.name")
        .bind(user)
        .fetch_all(conn)
        .await
}

#[allow(clippy::too_many_arguments)] // One call site each in login and refresh; a struct would only rename them.
fn issue(
    state: &AppState,
    user_id: Uuid,
    username: String,
    session: Uuid,
    refresh_token: String,
    roles: Vec<String>,
    password_change_required: bool,
    now: DateTime<Utc>,
    session_expires_at: DateTime<Utc>,
) -> Result<Issued, ApiError> {
    // An access token never outlives its session.
    let lifetime = (state.config().auth.access_token_minutes * 60)
        .min(u64::try_from((session_expires_at - now).num_seconds()).unwrap_or(0));
    let access_token = state.signing_key().issue(
        user_id,
        session,
        u64::try_from(now.timestamp()).unwrap_or(0),
        lifetime,
    )?;
    Ok(Issued {
        access_token,
        refresh_token,
        expires_in: lifetime,
        user_id,
        username,
        roles,
        password_change_required,
    })
}

/// Rotates a refresh token. A token presented twice ends its whole session (the family).
pub async fn refresh(
    state: &AppState,
    presented: &str,
    origin: &Origin,
) -> Result<Issued, ApiError> {
    let hash = tokens::hash_refresh_token(presented.trim());
    let now = state.clock().now();
    let mut conn = state.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    type Row = (
        Option<DateTime<Utc>>,
        Uuid,
        Uuid,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
        bool,
        Option<DateTime<Utc>>,
        String,
        bool,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT rt.used_at, s.id, s.user_id, s.ended_at, s.expires_at, s.security_stamp = u.security_stamp, \
                u.disabled_at, u.username, u.password_change_required \
         FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id JOIN users u ON u.id = s.user_id \
         WHERE rt.token_hash = $1 FOR UPDATE OF rt, s",
    )
    .bind(&hash[..])
    .fetch_optional(&mut *tx)
    .await?;
    let Some((
        used_at,
        session,
        user_id,
        ended_at,
        expires_at,
        stamp_current,
        disabled_at,
        username,
        change_required,
    )) = row
    else {
        return Err(ApiError::InvalidRefreshToken);
    };
    if used_at.is_some() {
        sessions::end(&mut tx, session, EndReason::RefreshReused, now).await?;
        event(
            &mut tx,
            EventKind::RefreshTokenReused,
            Some(user_id),
            &username,
            origin,
            json!({"session_id": session}),
        )
        .await?;
        tx.commit().await?;
        return Err(ApiError::RefreshReused);
    }
    if ended_at.is_some() || expires_at <= now || !stamp_current || disabled_at.is_some() {
        return Err(ApiError::SessionEnded);
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1")
        .bind(&hash[..])
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE sessions SET last_used_at = $2 WHERE id = $1")
        .bind(session)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let refresh_token = sessions::add_refresh_token(&mut tx, session, now).await?;
    tx.commit().await?;
    let roles = role_names(&mut conn, user_id).await?;
    issue(
        state,
        user_id,
        username,
        session,
        refresh_token,
        roles,
        change_required,
        now,
        expires_at,
    )
}

/// Ends the caller's session.
pub async fn logout(state: &AppState, caller: &Authenticated) -> Result<(), ApiError> {
    let mut conn = state.pool().acquire().await?;
    let mut tx = conn.begin().await?;
    sessions::end(
        &mut tx,
        caller.session_id,
        EndReason::Logout,
        state.clock().now(),
    )
    .await?;
    event(
        &mut tx,
        EventKind::Logout,
        Some(caller.user_id),
        &caller.username,
        &caller.origin,
        json!({"session_id": caller.session_id}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Changes the caller's own password; every session of theirs ends (log in again).
pub async fn change_password(
    state: &AppState,
    caller: &Authenticated,
    current: SecretString,
    new: SecretString,
) -> Result<(), ApiError> {
    // The current password is guessed through here as through a login: the same gate and the
    // same counter, and the session that reaches the lockout ends with it.
    // No pooled connection is held while the password hashes (a slow, bounded step).
    let key = throttle::key(&caller.username);
    let stored: String = {
        let mut conn = state.pool().acquire().await?;
        pass_gate(&mut conn, &key, &caller.origin, state.clock().now()).await?;
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(caller.user_id)
            .fetch_one(&mut *conn)
            .await?
    };
    let matches = state.hashing().verify(current.clone(), stored).await?;
    let mut conn = state.pool().acquire().await?;
    if !matches {
        let now = state.clock().now();
        let failed = FailedLogin {
            key: &key,
            user_id: Some(caller.user_id),
            username: &caller.username,
            origin: &caller.origin,
            now,
        };
        let locked = count_failure(
            &mut conn,
            state,
            failed,
            json!({"reason": "password_change"}),
        )
        .await?;
        if locked {
            sessions::end(&mut conn, caller.session_id, EndReason::Locked, now).await?;
        }
        return Err(ApiError::invalid(
            "current_password",
            "is not your current password",
        ));
    }
    throttle::clear(&mut conn, &key).await?;
    drop(conn);
    let mut errors = Vec::new();
    if let Err(why) = password::check_policy(new.expose_secret(), &caller.username) {
        errors.push(FieldError::new("new_password", why));
    } else if new.expose_secret() == current.expose_secret() {
        errors.push(FieldError::new(
            "new_password",
            "must differ from the current password",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let hash = state.hashing().hash(new).await?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    sqlx::query(
        "UPDATE users SET password_hash = $2, password_change_required = false, security_stamp = gen_random_uuid(), \
         updated_at = $3, version = version + 1 WHERE id = $1",
    )
    .bind(caller.user_id)
    .bind(hash)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sessions::end_all(&mut tx, caller.user_id, EndReason::PasswordChanged, now).await?;
    event(
        &mut tx,
        EventKind::PasswordChanged,
        Some(caller.user_id),
        &caller.username,
        &caller.origin,
        json!({"by": "self"}),
    )
    .await?;
    let change = Change::new("core.auth", "user", caller.user_id, "user.change_password")
        .after(json!({"password_change_required": false}));
    tx.record(change).await?;
    tx.commit().await?;
    Ok(())
}
