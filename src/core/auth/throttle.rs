//! Per-account login throttling and lockout, keyed by the lower-cased username whether or not
//! the account exists (so the answers never reveal which usernames are real).

use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;

use crate::core::config::AuthConfig;

/// Longest wait between attempts while throttled.
const MAX_DELAY_SECS: i64 = 300;
/// The first wait once throttling starts; it doubles with each further failure.
const FIRST_DELAY_SECS: i64 = 2;

/// May a login for this username be tried now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    Throttled { until: DateTime<Utc> },
    Locked { until: DateTime<Utc> },
}

/// What a failed attempt led to.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    pub failures: i32,
    pub throttled_until: Option<DateTime<Utc>>,
    /// Set when this failure locked the account.
    pub locked_until: Option<DateTime<Utc>>,
}

/// The key attempts are counted under.
pub fn key(username: &str) -> String {
    username.trim().to_lowercase()
}

/// Reads the gate for `key` at `now`.
pub async fn gate(
    conn: &mut PgConnection,
    key: &str,
    now: DateTime<Utc>,
) -> Result<Gate, sqlx::Error> {
    type Deadlines = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let row: Option<Deadlines> = sqlx::query_as(
        "SELECT throttled_until, locked_until FROM login_attempts WHERE username_key = $1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((_, Some(until))) if until > now => Gate::Locked { until },
        Some((Some(until), _)) if until > now => Gate::Throttled { until },
        _ => Gate::Open,
    })
}

/// Counts a failed attempt and decides the next wait or the lockout.
pub async fn fail(
    conn: &mut PgConnection,
    key: &str,
    now: DateTime<Utc>,
    config: &AuthConfig,
) -> Result<Failure, sqlx::Error> {
    // An expired lockout starts the count afresh.
    let failures: i32 = sqlx::query_scalar(
        "INSERT INTO login_attempts (username_key, failures, last_failure_at) VALUES ($1, 1, $2) \
         ON CONFLICT (username_key) DO UPDATE SET \
           failures = CASE WHEN login_attempts.locked_until IS NOT NULL AND login_attempts.locked_until <= $2 \
                           THEN 1 ELSE login_attempts.failures + 1 END, \
           locked_until = CASE WHEN login_attempts.locked_until <= $2 THEN NULL ELSE login_attempts.locked_until END, \
           last_failure_at = $2 \
         RETURNING failures",
    )
    .bind(key)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let lockout_at = i32::try_from(config.lockout_after_failures).unwrap_or(i32::MAX);
    let throttle_at = i32::try_from(config.throttle_after_failures).unwrap_or(i32::MAX);
    let locked_until = (failures >= lockout_at).then(|| {
        now + Duration::minutes(i64::try_from(config.lockout_minutes).unwrap_or(i64::MAX / 60_000))
    });
    let throttled_until = (failures >= throttle_at && locked_until.is_none()).then(|| {
        let doublings = u32::try_from(failures - throttle_at).unwrap_or(0).min(16);
        now + Duration::seconds((FIRST_DELAY_SECS << doublings).min(MAX_DELAY_SECS))
    });
    sqlx::query("UPDATE login_attempts SET throttled_until = $2, locked_until = COALESCE($3, locked_until) WHERE username_key = $1")
        .bind(key)
        .bind(throttled_until)
        .bind(locked_until)
        .execute(conn)
        .await?;
    Ok(Failure {
        failures,
        throttled_until,
        locked_until,
    })
}

/// Forgets the failures (a successful login, or an admin's unlock).
pub async fn clear(conn: &mut PgConnection, key: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM login_attempts WHERE username_key = $1")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Whole seconds from `now` until `until`, rounded up and at least 1 (for `Retry-After`).
pub fn seconds_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let millis = u64::try_from((until - now).num_milliseconds()).unwrap_or(0);
    millis.div_ceil(1000).max(1)
}
