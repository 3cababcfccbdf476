//! Login throttling and lockout, keyed by the lower-cased username whether or not the account
//! exists (so the answers never reveal which usernames are real).
//!
//! Failures are counted twice: per username *and client address*, which throttles and then
//! locks that address out of the account, and per username across all addresses (client `*`),
//! a softer limit that locks the account everywhere. So a machine guessing a password locks
//! itself out, not the owner at another till, and a guesser with many addresses is still bounded.
//!
//! An attempt is counted as a failure *before* its password is checked, under a row lock, and
//! given back when the password was right ([`Attempt::password_ok`]): a burst of parallel
//! guesses cannot pass the gate together while the hasher is busy with the first of them.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use sqlx::{Acquire, PgConnection};

use crate::core::config::AuthConfig;

/// Longest wait between attempts while throttled.
const MAX_DELAY_SECS: i64 = 300;
/// The first wait once throttling starts; it doubles with each further failure.
const FIRST_DELAY_SECS: i64 = 2;
/// The `client` of the account-wide row.
const ACCOUNT: &str = "*";
/// Rows quiet for this long (and not locked) are forgotten by the prune job.
pub const FORGET_AFTER_DAYS: i64 = 1;

/// May a login for this username be tried now?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Open,
    Closed(Closed),
}

/// Why an attempt may not be tried now, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    Throttled { until: DateTime<Utc> },
    Locked { until: DateTime<Utc> },
}

/// Where an attempt stands after it was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Consecutive failures from this address.
    pub failures: i32,
    /// Set when this failure locked the address out of the account, or the whole account.
    pub locked_until: Option<DateTime<Utc>>,
}

/// The key attempts are counted under.
pub fn key(username: &str) -> String {
    username.trim().to_lowercase()
}

/// One login attempt's counters: a username from a client address.
#[derive(Debug, Clone)]
pub struct Attempt {
    key: String,
    client: String,
}

/// One counter row, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter {
    failures: i32,
    last_failure_at: DateTime<Utc>,
    throttled_until: Option<DateTime<Utc>>,
    locked_until: Option<DateTime<Utc>>,
}

/// The limits one counter row is held to.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Failures from which each further attempt waits (`None`: the account row never throttles).
    throttle_at: Option<i32>,
    lockout_at: i32,
    lockout: Duration,
    /// Failures older than this no longer count (`None`: consecutive until a success).
    window: Option<Duration>,
}

impl Limits {
    fn per_client(config: &AuthConfig) -> Limits {
        Limits {
            throttle_at: Some(clamp(config.throttle_after_failures)),
            lockout_at: clamp(config.lockout_after_failures),
            lockout: lockout(config),
            window: None,
        }
    }

    fn account(config: &AuthConfig) -> Limits {
        Limits {
            throttle_at: None,
            lockout_at: clamp(config.account_lockout_after_failures),
            lockout: lockout(config),
            window: Some(lockout(config)),
        }
    }
}

fn clamp(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn lockout(config: &AuthConfig) -> Duration {
    Duration::minutes(i64::try_from(config.lockout_minutes).unwrap_or(i64::MAX / 60_000))
}

impl Counter {
    fn fresh(now: DateTime<Utc>) -> Counter {
        Counter {
            failures: 0,
            last_failure_at: now,
            throttled_until: None,
            locked_until: None,
        }
    }

    /// The counter as it stands at `now`: an expired lockout, or failures outside the window,
    /// start the count afresh.
    fn at(self, now: DateTime<Utc>, limits: Limits) -> Counter {
        let lock_expired = self.locked_until.is_some_and(|until| until <= now);
        let outside_window = limits
            .window
            .is_some_and(|window| self.last_failure_at + window <= now);
        if lock_expired || outside_window {
            return Counter::fresh(now);
        }
        self
    }

    fn gate(self, now: DateTime<Utc>) -> Gate {
        match (self.locked_until, self.throttled_until) {
            (Some(until), _) if until > now => Gate::Closed(Closed::Locked { until }),
            (_, Some(until)) if until > now => Gate::Closed(Closed::Throttled { until }),
            _ => Gate::Open,
        }
    }

    /// Counts `delta` failures (one more, or one given back) and sets the waits they lead to.
    fn count(self, delta: i32, now: DateTime<Utc>, limits: Limits) -> Counter {
        let failures = (self.failures + delta).max(0);
        let locked_until = match (failures >= limits.lockout_at, delta > 0) {
            (true, true) => Some(self.locked_until.unwrap_or(now + limits.lockout)),
            (true, false) => self.locked_until,
            (false, _) => None,
        };
        let throttled_until = match limits.throttle_at {
            Some(at) if failures >= at && locked_until.is_none() => {
                if delta > 0 {
                    let doublings = u32::try_from(failures - at).unwrap_or(0).min(16);
                    Some(
                        now + Duration::seconds(
                            (FIRST_DELAY_SECS << doublings).min(MAX_DELAY_SECS),
                        ),
                    )
                } else {
                    self.throttled_until
                }
            }
            _ => None,
        };
        Counter {
            failures,
            last_failure_at: if delta > 0 { now } else { self.last_failure_at },
            throttled_until,
            locked_until,
        }
    }
}

impl Attempt {
    /// `username` tried from `client` (no address known: all such attempts share one counter).
    pub fn new(username: &str, client: Option<IpAddr>) -> Attempt {
        Attempt {
            key: key(username),
            client: client.map_or_else(
                || "unknown".to_owned(),
                |ip| crate::core::auth::public_limit::client_key(ip).to_string(),
            ),
        }
    }

    /// The lower-cased username.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Counts this attempt as a failure unless the gate is closed (then nothing is counted and
    /// the gate says until when). Call before the password is checked.
    pub async fn begin(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
        config: &AuthConfig,
    ) -> Result<Result<Failure, Closed>, sqlx::Error> {
        self.update(conn, now, config, |account, client| {
            match (client.gate(now), account.gate(now)) {
                (Gate::Closed(closed), _) | (_, Gate::Closed(closed)) => Err(closed),
                (Gate::Open, Gate::Open) => Ok((1, 1)),
            }
        })
        .await
    }

    /// Gives back the failure [`begin`](Self::begin) counted: the password was right.
    pub async fn password_ok(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
        config: &AuthConfig,
    ) -> Result<(), sqlx::Error> {
        self.update(conn, now, config, |_, _| Ok::<_, ()>((-1, -1)))
            .await
            .map(|_| ())
    }

    /// Counts one more failure (a wrong second factor after a right password).
    pub async fn fail(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
        config: &AuthConfig,
    ) -> Result<Failure, sqlx::Error> {
        let counted = self
            .update(conn, now, config, |_, _| Ok::<_, ()>((1, 1)))
            .await?;
        Ok(counted.unwrap_or(Failure {
            failures: 0,
            locked_until: None,
        }))
    }

    /// Forgets this address's failures: the login succeeded.
    pub async fn succeeded(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM login_attempts WHERE username_key = $1 AND client = $2")
            .bind(&self.key)
            .bind(&self.client)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Reads both counters under a row lock, lets `decide` say how many failures to add to the
    /// account's and the address's (or refuse), and writes them back, in one transaction.
    async fn update<E>(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
        config: &AuthConfig,
        decide: impl FnOnce(Counter, Counter) -> Result<(i32, i32), E>,
    ) -> Result<Result<Failure, E>, sqlx::Error> {
        let (account_limits, client_limits) = (Limits::account(config), Limits::per_client(config));
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO login_attempts (username_key, client, failures, last_failure_at) \
             VALUES ($1, $2, 0, $3), ($1, $4, 0, $3) ON CONFLICT DO NOTHING",
        )
        .bind(&self.key)
        .bind(ACCOUNT)
        .bind(now)
        .bind(&self.client)
        .execute(&mut *tx)
        .await?;
        // The account row first, always: concurrent attempts lock in one order.
        let account = read_locked(&mut tx, &self.key, ACCOUNT).await?;
        let client = read_locked(&mut tx, &self.key, &self.client).await?;
        let (account, client) = (
            account.at(now, account_limits),
            client.at(now, client_limits),
        );
        let (account_delta, client_delta) = match decide(account, client) {
            Ok(deltas) => deltas,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let account_after = account.count(account_delta, now, account_limits);
        let client_after = client.count(client_delta, now, client_limits);
        write(&mut tx, &self.key, ACCOUNT, account_after).await?;
        write(&mut tx, &self.key, &self.client, client_after).await?;
        tx.commit().await?;
        let newly_locked =
            |before: Counter, after: Counter| match (before.gate(now), after.gate(now)) {
                (Gate::Closed(Closed::Locked { .. }), _) => None,
                (_, Gate::Closed(Closed::Locked { until })) => Some(until),
                _ => None,
            };
        Ok(Ok(Failure {
            failures: client_after.failures,
            locked_until: newly_locked(client, client_after)
                .or_else(|| newly_locked(account, account_after)),
        }))
    }
}

async fn read_locked(
    conn: &mut PgConnection,
    key: &str,
    client: &str,
) -> Result<Counter, sqlx::Error> {
    type Row = (
        i32,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let (failures, last_failure_at, throttled_until, locked_until): Row = sqlx::query_as(
        "SELECT failures, last_failure_at, throttled_until, locked_until FROM login_attempts \
         WHERE username_key = $1 AND client = $2 FOR UPDATE",
    )
    .bind(key)
    .bind(client)
    .fetch_one(conn)
    .await?;
    Ok(Counter {
        failures,
        last_failure_at,
        throttled_until,
        locked_until,
    })
}

async fn write(
    conn: &mut PgConnection,
    key: &str,
    client: &str,
    counter: Counter,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE login_attempts SET failures = $3, last_failure_at = $4, throttled_until = $5, locked_until = $6 \
         WHERE username_key = $1 AND client = $2",
    )
    .bind(key)
    .bind(client)
    .bind(counter.failures)
    .bind(counter.last_failure_at)
    .bind(counter.throttled_until)
    .bind(counter.locked_until)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets every failure of `username_key`, from every address (an admin's unlock); answers
/// whether there were any.
pub async fn clear(conn: &mut PgConnection, key: &str) -> Result<bool, sqlx::Error> {
    let had: Vec<bool> = sqlx::query_scalar(
        "DELETE FROM login_attempts WHERE username_key = $1 \
         RETURNING failures > 0 OR throttled_until IS NOT NULL OR locked_until IS NOT NULL",
    )
    .bind(key)
    .fetch_all(conn)
    .await?;
    Ok(had.into_iter().any(|h| h))
}

/// Forgets counters quiet for a day whose waits have passed (the prune job); answers how many.
pub async fn prune(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM login_attempts WHERE last_failure_at < $1 \
         AND (locked_until IS NULL OR locked_until <= $2) \
         AND (throttled_until IS NULL OR throttled_until <= $2)",
    )
    .bind(now - Duration::days(FORGET_AFTER_DAYS))
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// Whole seconds from `now` until `until`, rounded up and at least 1 (for `Retry-After`).
pub fn seconds_until(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    let millis = u64::try_from((until - now).num_milliseconds()).unwrap_or(0);
    millis.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            throttle_after_failures: 3,
            lockout_after_failures: 5,
            account_lockout_after_failures: 8,
            lockout_minutes: 30,
            ..AuthConfig::default()
        }
    }

    fn t0() -> DateTime<Utc> {
        "2026-12-06T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn failures_throttle_then_lock_and_a_right_password_gives_its_count_back() {
        let limits = Limits::per_client(&config());
        let now = t0();
        let mut c = Counter::fresh(now);
        for _ in 0..2 {
            c = c.count(1, now, limits);
            assert_eq!(c.gate(now), Gate::Open);
        }
        c = c.count(1, now, limits);
        assert_eq!(
            c.gate(now),
            Gate::Closed(Closed::Throttled {
                until: now + Duration::seconds(2)
            })
        );
        c = c.count(1, now, limits);
        assert_eq!(
            c.gate(now),
            Gate::Closed(Closed::Throttled {
                until: now + Duration::seconds(4)
            })
        );
        // The fifth attempt, counted up front, would lock; its password was right: given back.
        let reserved = c.count(1, now, limits);
        assert!(matches!(
            reserved.gate(now),
            Gate::Closed(Closed::Locked { .. })
        ));
        let back = reserved.count(-1, now, limits);
        assert_eq!(back.locked_until, None);
        assert_eq!(back.failures, 4);
    }

    #[test]
    fn an_expired_lock_or_an_old_account_count_starts_afresh() {
        let config = config();
        let now = t0();
        let locked = Counter {
            failures: 5,
            last_failure_at: now,
            throttled_until: None,
            locked_until: Some(now + Duration::minutes(30)),
        };
        let later = now + Duration::minutes(31);
        assert_eq!(locked.at(later, Limits::per_client(&config)).failures, 0);
        let account = Counter {
            failures: 7,
            last_failure_at: now,
            throttled_until: None,
            locked_until: None,
        };
        assert_eq!(account.at(later, Limits::account(&config)).failures, 0);
        assert_eq!(
            account
                .at(now + Duration::minutes(5), Limits::account(&config))
                .failures,
            7
        );
    }

    #[test]
    fn the_account_row_locks_but_never_throttles() {
        let limits = Limits::account(&config());
        let now = t0();
        let mut c = Counter::fresh(now);
        for _ in 0..7 {
            c = c.count(1, now, limits);
            assert_eq!(c.gate(now), Gate::Open);
        }
        c = c.count(1, now, limits);
        assert_eq!(
            c.gate(now),
            Gate::Closed(Closed::Locked {
                until: now + Duration::minutes(30)
            })
        );
    }
}
