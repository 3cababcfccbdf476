//! Two-factor authentication: TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, one step of skew)
//! and one-time recovery codes. A code is never accepted twice (the last used step is kept).

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::Authenticated;
use crate::core::auth::sealing;
use crate::core::http::ApiError;
use crate::core::security::events::{self, EventKind, SecurityEvent};
use crate::core::state::AppState;

const ISSUER: &str = "PlugPOS";
const RECOVERY_CODES: usize = 10;
const RECOVERY_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

fn totp(secret: &[u8], account: &str) -> Result<Totp, ApiError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(secret.to_vec())
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', "_"))
        .build()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot set up TOTP: {e:?}")))
}

fn unix(time: DateTime<Utc>) -> u64 {
    u64::try_from(time.timestamp()).unwrap_or(0)
}

fn normalize_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn hash_recovery(code: &str) -> [u8; 32] {
    Sha256::digest(normalize_recovery(code).as_bytes()).into()
}

fn new_recovery_code() -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    let chars: String = bytes
        .iter()
        .map(|b| char::from(RECOVERY_ALPHABET[usize::from(*b) % RECOVERY_ALPHABET.len()]))
        .collect();
    format!("{}-{}", &chars[..5], &chars[5..])
}

/// A user's confirmed TOTP factor.
pub struct Factor {
    secret: Vec<u8>,
    last_step: Option<i64>,
    /// Stored sealed (else it predates sealing and is sealed once it is used).
    sealed: bool,
}

/// What a login must satisfy for `user`: `None` when MFA is not enabled.
pub async fn second_factor(
    state: &AppState,
    conn: &mut PgConnection,
    user: Uuid,
) -> Result<Option<Factor>, ApiError> {
    let row: Option<(Vec<u8>, Option<i64>)> = sqlx::query_as(
        "SELECT secret, last_used_step FROM user_mfa WHERE user_id = $1 AND confirmed_at IS NOT NULL",
    )
    .bind(user)
    .fetch_optional(conn)
    .await?;
    let Some((stored, last_step)) = row else {
        return Ok(None);
    };
    Ok(Some(Factor {
        secret: state.sealing().open(&stored, user.as_bytes())?,
        last_step,
        sealed: sealing::is_sealed(&stored),
    }))
}

/// Checks a TOTP code or a recovery code at login; true when one is valid (and now used).
#[allow(clippy::too_many_arguments)] // The login's one call; the factor and both codes are separate facts.
pub async fn check_login(
    state: &AppState,
    conn: &mut PgConnection,
    user: Uuid,
    username: &str,
    factor: Factor,
    totp_code: Option<&str>,
    recovery_code: Option<&str>,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    if let Some(code) = totp_code {
        let step = totp(&factor.secret, username)?
            .check(code.trim(), unix(now))
            .and_then(|s| i64::try_from(s).ok());
        let Some(step) = step.filter(|s| factor.last_step.is_none_or(|last| *s > last)) else {
            return Ok(false);
        };
        let updated = sqlx::query("UPDATE user_mfa SET last_used_step = $2 WHERE user_id = $1 AND (last_used_step IS NULL OR last_used_step < $2)")
            .bind(user)
            .bind(step)
            .execute(&mut *conn)
            .await?;
        if updated.rows_affected() == 1 && !factor.sealed {
            let sealed = state.sealing().seal(&factor.secret, user.as_bytes())?;
            sqlx::query("UPDATE user_mfa SET secret = $2 WHERE user_id = $1")
                .bind(user)
                .bind(sealed)
                .execute(&mut *conn)
                .await?;
        }
        return Ok(updated.rows_affected() == 1);
    }
    if let Some(code) = recovery_code {
        let used = sqlx::query("UPDATE mfa_recovery_codes SET used_at = $3 WHERE code_hash = $1 AND user_id = $2 AND used_at IS NULL")
            .bind(&hash_recovery(code)[..])
            .bind(user)
            .bind(now)
            .execute(conn)
            .await?;
        return Ok(used.rows_affected() == 1);
    }
    Err(ApiError::MfaRequired)
}

/// Seals every TOTP seed still stored in clear (stored before sealing); answers how many.
pub async fn seal_stored_seeds(state: &AppState) -> anyhow::Result<u64> {
    let mut conn = state.pool().acquire().await?;
    let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as("SELECT user_id, secret FROM user_mfa")
        .fetch_all(&mut *conn)
        .await?;
    let mut sealed = 0;
    for (user, stored) in rows.into_iter().filter(|(_, s)| !sealing::is_sealed(s)) {
        let secret = state.sealing().seal(&stored, user.as_bytes())?;
        // Only if it is still the clear seed read above (an enrolment may have replaced it).
        let done =
            sqlx::query("UPDATE user_mfa SET secret = $2 WHERE user_id = $1 AND secret = $3")
                .bind(user)
                .bind(secret)
                .bind(&stored)
                .execute(&mut *conn)
                .await?;
        sealed += done.rows_affected();
    }
    Ok(sealed)
}

/// A new TOTP secret to add to an authenticator app.
/// A started enrolment: the secret as Base32 (for typing into an authenticator app) and as an
/// `otpauth://totp/...` URI (for a QR code).
pub struct Started {
    pub secret: String,
    pub otpauth_uri: String,
}

/// Starts TOTP enrolment for the user (replacing an unconfirmed one); refused once MFA is on.
pub async fn start_enrolment(
    state: &AppState,
    conn: &mut PgConnection,
    user_id: Uuid,
    username: &str,
) -> Result<Started, ApiError> {
    let enabled: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_mfa WHERE user_id = $1 AND confirmed_at IS NOT NULL)",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    if enabled {
        return Err(ApiError::Conflict {
            code: "auth.mfa_already_enabled",
            detail: "Two-factor authentication is already enabled.".to_owned(),
        });
    }
    let mut secret = [0u8; 20];
    rand::rng().fill_bytes(&mut secret);
    let sealed = state.sealing().seal(&secret, user_id.as_bytes())?;
    sqlx::query(
        "INSERT INTO user_mfa (user_id, secret) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE SET secret = $2, confirmed_at = NULL, last_used_step = NULL, created_at = now()",
    )
    .bind(user_id)
    .bind(sealed)
    .execute(&mut *conn)
    .await?;
    let otpauth_uri = totp(&secret, username)?
        .to_url()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("cannot build the otpauth URI: {e:?}")))?;
    Ok(Started {
        secret: Secret::from(secret).to_base32(),
        otpauth_uri,
    })
}

/// Confirms the caller's pending enrolment with a first `code` (audited): MFA is on from now,
/// and the answer is the recovery codes, which are shown only this once.
pub async fn confirm(
    state: &AppState,
    caller: &Authenticated,
    code: &str,
) -> Result<Vec<String>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let pending: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT secret FROM user_mfa WHERE user_id = $1 AND confirmed_at IS NULL",
    )
    .bind(caller.user_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(stored) = pending else {
        return Err(ApiError::Conflict {
            code: "auth.mfa_not_enrolling",
            detail: "Start with POST /api/v1/auth/mfa/enroll.".to_owned(),
        });
    };
    let secret = state.sealing().open(&stored, caller.user_id.as_bytes())?;
    let now = state.clock().now();
    let step = totp(&secret, &caller.username)?
        .check(code.trim(), unix(now))
        .and_then(|s| i64::try_from(s).ok());
    let Some(step) = step else {
        return Err(ApiError::invalid(
            "code",
            "is not the current code of the authenticator app",
        ));
    };
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    drop(conn);
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    sqlx::query("UPDATE user_mfa SET confirmed_at = $2, last_used_step = $3 WHERE user_id = $1")
        .bind(caller.user_id)
        .bind(now)
        .bind(step)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM mfa_recovery_codes WHERE user_id = $1")
        .bind(caller.user_id)
        .execute(&mut *tx)
        .await?;
    for code in &codes {
        sqlx::query("INSERT INTO mfa_recovery_codes (code_hash, user_id) VALUES ($1, $2)")
            .bind(&hash_recovery(code)[..])
            .bind(caller.user_id)
            .execute(&mut *tx)
            .await?;
    }
    events::record(
        &mut tx,
        SecurityEvent {
            kind: EventKind::MfaChanged,
            user_id: Some(caller.user_id),
            username: Some(&caller.username),
            origin: &caller.origin,
            details: json!({"enabled": true}),
        },
    )
    .await?;
    let change = Change::new("core.auth", "user", caller.user_id, "user.enable_mfa")
        .after(json!({"mfa": "totp", "recovery_codes": RECOVERY_CODES}));
    tx.record(change).await?;
    tx.commit().await?;
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_check_within_one_step_and_recovery_codes_normalize() {
        let totp = totp(&[7u8; 20], "kim").unwrap();
        let code = totp.generate(1_000_000).to_string();
        assert_eq!(code.len(), 6);
        assert!(
            totp.check(&code, 1_000_000 + 30).is_some(),
            "one step of skew"
        );
        assert!(totp.check(&code, 1_000_000 + 90).is_none());
        let recovery = new_recovery_code();
        assert_eq!(
            hash_recovery(&recovery),
            hash_recovery(&recovery.to_lowercase().replace('-', " "))
        );
    }
}
