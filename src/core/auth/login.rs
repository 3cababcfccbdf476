//! The login, refresh, logout and password-change flows.

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::{Acquire, PgConnection};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::Authenticated;
use crate::core::auth::sessions::{self, EndReason};
use crate::core::auth::throttle::{self, Attempt, Closed, Failure};
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
///
/// The attempt is counted as a failure before its password is checked (and given back when
/// it was right), and no pooled connection is held while the password hashes: a flood of
/// logins waits in the hasher's bounded queue (or is refused `auth.busy`), never in the pool
/// that sales need.
pub async fn login(
    state: &AppState,
    username: &str,
    password: SecretString,
    second: SecondFactor<'_>,
    origin: &Origin,
) -> Result<Issued, ApiError> {
    let admitted = state.hashing().admit().map_err(|_| ApiError::Busy {
        retry_after_secs: 1,
    })?;
    let attempt = Attempt::new(username, origin.ip);
    let (counted, user) = {
        let mut conn = state.pool().acquire().await?;
        let counted = pass_gate(state, &mut conn, &attempt, origin).await?;
        let user: Option<UserRow> = sqlx::query_as(
            "SELECT id, username, password_hash, disabled_at, password_change_required, security_stamp \
             FROM users WHERE lower(username) = $1",
        )
        .bind(attempt.key())
        .fetch_optional(&mut *conn)
        .await?;
        (counted, user)
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let valid = admitted.verify(password, stored).await?;
    drop(admitted);
    let mut conn = state.pool().acquire().await?;
    let now = state.clock().now();
    let user = match user {
        Some(user) if valid && user.disabled_at.is_none() => user,
        user => {
            // A disabled account answers exactly as a wrong password, counted the same way, so
            // the answer never confirms a guessed password (the event says which it was).
            let reason = match valid {
                true => "disabled",
                false => "password",
            };
            let user_id = user.as_ref().map(|u| u.id);
            let failed = FailedLogin {
                user_id,
                username: attempt.key(),
                origin,
            };
            record_failure(&mut conn, failed, counted, json!({"reason": reason})).await?;
            return Err(ApiError::InvalidCredentials);
        }
    };
    let config = &state.config().auth;
    attempt.password_ok(&mut conn, now, config).await?;
    check_second_factor(state, &mut conn, &user, &attempt, second, origin, now).await?;
    attempt.succeeded(&mut conn).await?;
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

/// Counts the attempt up front, or refuses (and records) it while this address is throttled or
/// locked out of the account, or the account is locked.
pub(super) async fn pass_gate(
    state: &AppState,
    conn: &mut PgConnection,
    attempt: &Attempt,
    origin: &Origin,
) -> Result<Failure, ApiError> {
    let now = state.clock().now();
    let (until, locked) = match attempt.begin(conn, now, &state.config().auth).await? {
        Ok(counted) => return Ok(counted),
        Err(Closed::Throttled { until }) => (until, false),
        Err(Closed::Locked { until }) => (until, true),
    };
    let details = match locked {
        true => json!({"until": until, "locked": true}),
        false => json!({"until": until}),
    };
    event(
        conn,
        EventKind::LoginThrottled,
        None,
        attempt.key(),
        origin,
        details,
    )
    .await?;
    let retry_after_secs = throttle::seconds_until(until, now);
    Err(match locked {
        true => ApiError::Locked { retry_after_secs },
        false => ApiError::Throttled { retry_after_secs },
    })
}

/// The second factor, when the user has one: a wrong code counts like a wrong password; a
/// recovery code used is recorded.
async fn check_second_factor(
    state: &AppState,
    conn: &mut PgConnection,
    user: &UserRow,
    attempt: &Attempt,
    second: SecondFactor<'_>,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let Some(factor) = mfa::second_factor(state, conn, user.id).await? else {
        return Ok(());
    };
    let ok = mfa::check_login(
        state,
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
        let counted = attempt.fail(conn, now, &state.config().auth).await?;
        let failed = FailedLogin {
            user_id: Some(user.id),
            username: &user.username,
            origin,
        };
        record_failure(conn, failed, counted, json!({"reason": "second_factor"})).await?;
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

/// Who failed to log in, for the record.
pub(super) struct FailedLogin<'a> {
    pub(super) user_id: Option<Uuid>,
    pub(super) username: &'a str,
    pub(super) origin: &'a Origin,
}

/// Records a failed attempt (counted already) and the lockout it led to, if any; answers
/// whether it locked.
pub(super) async fn record_failure(
    conn: &mut PgConnection,
    failed: FailedLogin<'_>,
    counted: Failure,
    mut details: serde_json::Value,
) -> Result<bool, ApiError> {
    if let Some(map) = details.as_object_mut() {
        map.insert("consecutive_failures".to_owned(), json!(counted.failures));
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
    if let Some(until) = counted.locked_until {
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
    Ok(counted.locked_until.is_some())
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
        Option<Uuid>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT rt.used_at, s.id, s.user_id, s.ended_at, s.expires_at, s.security_stamp = u.security_stamp, \
                u.disabled_at, u.username, u.password_change_required, s.device_id \
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
        device,
    )) = row
    else {
        return Err(ApiError::InvalidRefreshToken);
    };
    // A till's session is refreshed by that till (its credential), not by whoever copied the
    // refresh token.
    if device.is_some() && origin.device_id != device {
        return Err(crate::core::devices::invalid());
    }
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
        // Answered as a refusal, so the request's end forgets no cache: the session's cached row
        // must go now, or its access token would work until PostgreSQL's notification arrives.
        state.changes().forget_all();
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

/// Checks the caller's own current password (before a password or PIN change). It is guessed
/// through here as through a login: the same gate and the same counters, and the session that
/// reaches the lockout ends with it. No pooled connection is held while the password hashes.
pub async fn check_current_password(
    state: &AppState,
    caller: &Authenticated,
    current: SecretString,
) -> Result<(), ApiError> {
    let attempt = Attempt::new(&caller.username, caller.origin.ip);
    let (counted, stored): (Failure, String) = {
        let mut conn = state.pool().acquire().await?;
        let counted = pass_gate(state, &mut conn, &attempt, &caller.origin).await?;
        let stored = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(caller.user_id)
            .fetch_one(&mut *conn)
            .await?;
        (counted, stored)
    };
    let matches = state.hashing().verify(current, stored).await?;
    let mut conn = state.pool().acquire().await?;
    let now = state.clock().now();
    if !matches {
        let failed = FailedLogin {
            user_id: Some(caller.user_id),
            username: &caller.username,
            origin: &caller.origin,
        };
        let locked = record_failure(
            &mut conn,
            failed,
            counted,
            json!({"reason": "password_change"}),
        )
        .await?;
        if locked {
            sessions::end(&mut conn, caller.session_id, EndReason::Locked, now).await?;
            // A refusal: the session's cached row goes now (see `refresh`).
            state.changes().forget_all();
        }
        return Err(ApiError::invalid(
            "current_password",
            "is not your current password",
        ));
    }
    attempt
        .password_ok(&mut conn, now, &state.config().auth)
        .await?;
    attempt.succeeded(&mut conn).await?;
    Ok(())
}

/// Changes the caller's own password; every session of theirs ends (log in again).
pub async fn change_password(
    state: &AppState,
    caller: &Authenticated,
    current: SecretString,
    new: SecretString,
) -> Result<(), ApiError> {
    check_current_password(state, caller, current.clone()).await?;
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
