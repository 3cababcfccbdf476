//! A second person's credentials typed on someone else's till: the approver of a sensitive
//! action (a return, a void, a discount above the cashier's limit). The approver proves who
//! they are with their password or their PIN (`PUT /api/v1/auth/pin`); either way the attempt
//! goes through the same gate and counters as a login with their username from this address, so
//! approvals are no side door for guessing a manager's password. A PIN is also locked after
//! [`PIN_TRIES`] wrong ones in a row, until its owner sets a new one.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::Authenticated;
use crate::core::auth::login::{FailedLogin, pass_gate, record_failure};
use crate::core::auth::throttle::Attempt;
use crate::core::http::ApiError;
use crate::core::http::problem::FieldError;
use crate::core::security::events::{self, EventKind, Origin, SecurityEvent};
use crate::core::state::AppState;

/// Wrong PINs in a row that lock a PIN.
pub const PIN_TRIES: i32 = 5;

/// How an approver proves who they are.
#[derive(Debug)]
pub enum Credential {
    Password(SecretString),
    Pin(SecretString),
}

/// The person who approved, with what they may do.
#[derive(Debug, Clone)]
pub struct Approver {
    pub user_id: Uuid,
    pub username: String,
    pub permissions: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct ApproverRow {
    id: Uuid,
    username: String,
    password_hash: String,
    disabled_at: Option<DateTime<Utc>>,
    pin_hash: Option<String>,
    pin_locked: bool,
}

/// 403 `approval.credentials`: the approver's username, password or PIN is wrong (the caller's
/// own session is fine, hence not a 401).
pub fn wrong_credentials() -> ApiError {
    ApiError::Denied {
        code: "approval.credentials",
        detail: "The approver's username, password or PIN is wrong.".to_owned(),
    }
}

/// Checks the approver's credentials as typed at `origin`: the login gate first (throttled or
/// locked: 429), then the password or PIN; a wrong one counts as a failed login of theirs.
pub async fn check(
    state: &AppState,
    username: &str,
    credential: Credential,
    origin: &Origin,
) -> Result<Approver, ApiError> {
    let admitted = state.hashing().admit().map_err(|_| ApiError::Busy {
        retry_after_secs: 1,
    })?;
    let attempt = Attempt::new(username, origin.ip);
    let (counted, user) = {
        let mut conn = state.pool().acquire().await?;
        let counted = pass_gate(state, &mut conn, &attempt, origin).await?;
        let user: Option<ApproverRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.password_hash, u.disabled_at, p.pin_hash, p.locked_at IS NOT NULL AS pin_locked \
             FROM users u LEFT JOIN user_pins p ON p.user_id = u.id WHERE lower(u.username) = $1",
        )
        .bind(attempt.key())
        .fetch_optional(&mut *conn)
        .await?;
        (counted, user)
    };
    let (secret, stored, is_pin) = match credential {
        Credential::Password(p) => (p, user.as_ref().map(|u| u.password_hash.clone()), false),
        Credential::Pin(p) => {
            let usable = user.as_ref().filter(|u| !u.pin_locked);
            (p, usable.and_then(|u| u.pin_hash.clone()), true)
        }
    };
    let valid = admitted.verify(secret, stored).await?;
    drop(admitted);
    let mut conn = state.pool().acquire().await?;
    let now = state.clock().now();
    let user = match user {
        Some(user) if valid && user.disabled_at.is_none() => user,
        user => {
            let reason = match (is_pin, user.as_ref().is_some_and(|u| u.pin_locked)) {
                (true, true) => "approval_pin_locked",
                (true, false) => "approval_pin",
                (false, _) => "approval_password",
            };
            if is_pin && let Some(user) = &user {
                count_wrong_pin(&mut conn, user.id, &user.username, origin, now).await?;
            }
            let failed = FailedLogin {
                user_id: user.as_ref().map(|u| u.id),
                username: attempt.key(),
                origin,
            };
            record_failure(&mut conn, failed, counted, json!({"reason": reason})).await?;
            if is_pin && user.as_ref().is_some_and(|u| u.pin_locked) {
                return Err(ApiError::Denied {
                    code: "approval.pin_locked",
                    detail: "This approver's PIN is locked after too many wrong tries; they can approve with their password, or set a new PIN.".to_owned(),
                });
            }
            return Err(wrong_credentials());
        }
    };
    attempt
        .password_ok(&mut conn, now, &state.config().auth)
        .await?;
    attempt.succeeded(&mut conn).await?;
    if is_pin {
        sqlx::query("UPDATE user_pins SET failures = 0 WHERE user_id = $1 AND failures > 0")
            .bind(user.id)
            .execute(&mut *conn)
            .await?;
    }
    let permissions = sqlx::query_scalar(
        "SELECT DISTINCT rp.permission FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
         WHERE ur.user_id = $1",
    )
    .bind(user.id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Approver {
        user_id: user.id,
        username: user.username,
        permissions,
    })
}

/// Counts a wrong PIN; the fifth in a row locks it (a security event).
async fn count_wrong_pin(
    conn: &mut PgConnection,
    user_id: Uuid,
    username: &str,
    origin: &Origin,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let locked: Option<bool> = sqlx::query_scalar(
        "UPDATE user_pins SET failures = failures + 1, \
           locked_at = CASE WHEN failures + 1 >= $2 THEN coalesce(locked_at, $3) ELSE locked_at END \
         WHERE user_id = $1 AND locked_at IS NULL RETURNING locked_at IS NOT NULL",
    )
    .bind(user_id)
    .bind(PIN_TRIES)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if locked == Some(true) {
        events::record(
            conn,
            SecurityEvent {
                kind: EventKind::PinLocked,
                user_id: Some(user_id),
                username: Some(username),
                origin,
                details: json!({"failures": PIN_TRIES}),
            },
        )
        .await?;
    }
    Ok(())
}

/// A PIN's shape: 4 to 8 digits.
pub fn check_pin(pin: &str) -> Result<(), FieldError> {
    if (4..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(FieldError::new("pin", "must be 4 to 8 digits"))
    }
}

/// Sets (or replaces, unlocking) the caller's approver PIN after checking their password the way
/// a password change does.
pub async fn set_pin(
    state: &AppState,
    caller: &Authenticated,
    current: SecretString,
    pin: SecretString,
) -> Result<(), ApiError> {
    check_pin(pin.expose_secret()).map_err(|e| ApiError::Validation(vec![e]))?;
    crate::core::auth::login::check_current_password(state, caller, current).await?;
    // Two hashes under two salts: the server checks the first; enrolled tills get the second (the
    // PIN's offline verifier, `core::sync::entities`), so a till's copy is not the server's.
    let offline = SecretString::from(pin.expose_secret().to_owned());
    let hash = state.hashing().hash(pin).await?;
    let offline = state.hashing().hash(offline).await?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    let replaced: bool = sqlx::query_scalar(
        "INSERT INTO user_pins AS p (user_id, pin_hash, offline_verifier, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET pin_hash = EXCLUDED.pin_hash, offline_verifier = EXCLUDED.offline_verifier, \
           failures = 0, locked_at = NULL, updated_at = EXCLUDED.updated_at \
         RETURNING (xmax <> 0)",
    )
    .bind(caller.user_id)
    .bind(hash)
    .bind(offline)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    tx.record(
        Change::new("core.auth", "user", caller.user_id, "user.set_pin")
            .after(json!({"pin": "set", "replaced": replaced})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Removes the caller's PIN (they approve with their password from then on); 404 `auth.no_pin`
/// when they have none.
pub async fn remove_pin(state: &AppState, caller: &Authenticated) -> Result<(), ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    let removed = sqlx::query("DELETE FROM user_pins WHERE user_id = $1")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if removed == 0 {
        return Err(ApiError::NotFound {
            code: "auth.no_pin",
            detail: "You have no approver PIN.".to_owned(),
        });
    }
    tx.record(
        Change::new("core.auth", "user", caller.user_id, "user.remove_pin")
            .after(json!({"pin": "removed"})),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pin_is_four_to_eight_digits() {
        for good in ["0000", "1234", "12345678"] {
            assert!(check_pin(good).is_ok(), "{good}");
        }
        for bad in ["", "123", "123456789", "12a4", " 1234", "１２３４"] {
            assert!(check_pin(bad).is_err(), "{bad:?}");
        }
    }
}
