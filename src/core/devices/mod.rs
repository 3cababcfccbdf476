//! Enrolled tills. An admin creates a device for a register and gets a one-time enrolment code
//! (15 minutes); the desktop client exchanges the code for the device's credential, a random
//! secret shown once and kept only as its SHA-256. A login that carries the credential
//! (`X-Device-Token`) opens a session bound to the device: every request of that session must
//! carry it too, the audit records of the session name the device (`workstation_id`), and revoking
//! the device ends its sessions at once. A register has at most one device that is not revoked.

pub mod http;

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::http::ApiError;
use crate::core::state::AppState;

pub const READ: &str = "administration.devices.read";
pub const MANAGE: &str = "administration.devices.manage";
/// Users holding it are shipped to tills (with their PIN's offline verifier) by the change feed.
pub const OFFLINE_USE: &str = "administration.devices.offline_use";

/// The request header that carries a device's credential.
pub const TOKEN_HEADER: &str = "x-device-token";
/// The request header a till names its application's version in (kept with the device).
pub const APP_VERSION_HEADER: &str = "x-app-version";
/// How long an enrolment code works.
pub const CODE_LIFETIME: Duration = Duration::minutes(15);
/// A device's `last_seen_at` moves on at most this often (it is written, not cached).
const SEEN_EVERY: Duration = Duration::seconds(60);
/// The credential's prefix, so a leaked one is recognisable (and redacted by shape).
const TOKEN_PREFIX: &str = "pdt_";
/// Enrolment codes: ten characters of Crockford's base32 (no I, L, O, U), typed as `XXXXX-XXXXX`.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN: usize = 10;

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Device {
    pub id: Uuid,
    pub name: String,
    pub register_id: Uuid,
    /// `pending` (created, not enrolled yet), `enrolled` or `revoked`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub enrolled_at: Option<DateTime<Utc>>,
    /// Its last request, to the minute.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The version its application last named (`X-App-Version`).
    pub app_version: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last pulled the change feed.
    pub sync_at: Option<DateTime<Utc>>,
}

/// A device's columns over `devices d LEFT JOIN device_activity a ON a.device_id = d.id`.
const DEVICE_COLUMNS: &str = "d.id, d.name, d.register_id, \
     CASE WHEN d.revoked_at IS NOT NULL THEN 'revoked' WHEN d.enrolled_at IS NOT NULL THEN 'enrolled' ELSE 'pending' END AS status, \
     d.created_at, d.enrolled_at, a.last_seen_at, a.app_version, d.revoked_at, a.sync_at";
const DEVICE_FROM: &str = "devices d LEFT JOIN device_activity a ON a.device_id = d.id";

/// A new credential and its stored hash.
pub fn new_token() -> (String, [u8; 32]) {
    crate::shared::secret::new(TOKEN_PREFIX)
}

/// The stored form of a credential.
pub fn token_hash(token: &str) -> [u8; 32] {
    crate::shared::secret::digest(token.trim())
}

/// A new enrolment code (`XXXXX-XXXXX`) and the hash it is stored as.
pub fn new_code() -> (String, [u8; 32]) {
    let mut rng = rand::rng();
    let raw: String = (0..CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect();
    let shown = format!("{}-{}", &raw[..5], &raw[5..]);
    (shown, code_hash(&raw))
}

/// The code as stored: read the way people type it (any case, with or without the dash and
/// spaces, O for 0, I and L for 1); `None` when it cannot be a code.
pub fn normalize_code(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    (code.len() == CODE_LEN && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

fn code_hash(normalized: &str) -> [u8; 32] {
    Sha256::digest(normalized.as_bytes()).into()
}

/// Creates a pending device for `register` with a first enrolment code (returned with its expiry).
pub async fn create(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    register: Uuid,
    by: Uuid,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO devices (id, name, register_id, created_by, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(name)
    .bind(register)
    .bind(by)
    .bind(now)
    .execute(conn)
    .await
    .map(drop)
}

/// A new enrolment code for pending device `id` (earlier unused codes stop working); `None` when
/// the device is not pending (enrolled, revoked, unknown).
pub async fn issue_code(
    conn: &mut PgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<(String, DateTime<Utc>)>, sqlx::Error> {
    let pending: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM devices WHERE id = $1 AND enrolled_at IS NULL AND revoked_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if pending.is_none() {
        return Ok(None);
    }
    sqlx::query("DELETE FROM device_enrolments WHERE device_id = $1 AND used_at IS NULL")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let (code, hash) = new_code();
    let expires_at = now + CODE_LIFETIME;
    sqlx::query(
        "INSERT INTO device_enrolments (code_hash, device_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(&hash[..])
    .bind(id)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(Some((code, expires_at)))
}

/// Why an enrolment code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefused {
    /// No such code (or it was replaced by a newer one).
    Unknown,
    Expired,
    Used,
    /// Its device was revoked meanwhile.
    Revoked,
}

/// Uses the enrolment code `typed`: the device becomes enrolled with `token_hash` as its
/// credential. Returns the device id.
pub async fn enrol(
    conn: &mut PgConnection,
    typed: &str,
    token_hash: &[u8; 32],
    app_version: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Result<Uuid, CodeRefused>, sqlx::Error> {
    let Some(code) = normalize_code(typed) else {
        return Ok(Err(CodeRefused::Unknown));
    };
    // The device, when the code expires, when it was used, whether the device was revoked.
    type CodeRow = (Uuid, DateTime<Utc>, Option<DateTime<Utc>>, bool);
    let row: Option<CodeRow> = sqlx::query_as(
        "SELECT e.device_id, e.expires_at, e.used_at, d.revoked_at IS NOT NULL \
         FROM device_enrolments e JOIN devices d ON d.id = e.device_id WHERE e.code_hash = $1 FOR UPDATE",
    )
    .bind(&code_hash(&code)[..])
    .fetch_optional(&mut *conn)
    .await?;
    let Some((device, expires_at, used_at, revoked)) = row else {
        return Ok(Err(CodeRefused::Unknown));
    };
    let refused = match () {
        _ if revoked => Some(CodeRefused::Revoked),
        _ if used_at.is_some() => Some(CodeRefused::Used),
        _ if expires_at <= now => Some(CodeRefused::Expired),
        _ => None,
    };
    if let Some(refused) = refused {
        return Ok(Err(refused));
    }
    sqlx::query("UPDATE device_enrolments SET used_at = $2 WHERE code_hash = $1")
        .bind(&code_hash(&code)[..])
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE devices SET token_hash = $2, enrolled_at = $3 WHERE id = $1")
        .bind(device)
        .bind(&token_hash[..])
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO device_activity (device_id, last_seen_at, app_version) VALUES ($1, $2, $3)",
    )
    .bind(device)
    .bind(now)
    .bind(app_version)
    .execute(conn)
    .await?;
    Ok(Ok(device))
}

/// The enrolled, unrevoked device whose credential is `token`.
pub async fn by_token(conn: &mut PgConnection, token: &str) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM devices WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(&token_hash(token)[..])
        .fetch_optional(conn)
        .await
}

/// The key of the cache of register bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BoundRegister(Uuid);

/// Registers whose binding is kept in memory at most.
const BINDING_CACHE: usize = 1_000;

/// The device (not revoked) register `register` is bound to, if any; cached until devices change.
pub async fn bound_to(state: &AppState, register: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    let found = state
        .cache::<BoundRegister, Arc<Option<Uuid>>>(BINDING_CACHE)
        .get_or_read(BoundRegister(register), || async {
            let device: Option<Uuid> = sqlx::query_scalar(
                "SELECT id FROM devices WHERE register_id = $1 AND revoked_at IS NULL",
            )
            .bind(register)
            .fetch_optional(state.pool())
            .await?;
            Ok::<_, sqlx::Error>(Some(Arc::new(device)))
        })
        .await?;
    Ok(found.and_then(|bound| *bound))
}

/// The offline pushes in progress (`core::sync::push`): one lock per till.
#[derive(Default)]
struct PushLocks(
    std::sync::Mutex<std::collections::HashMap<Uuid, std::sync::Arc<tokio::sync::Mutex<()>>>>,
);

/// The lock that keeps till `device`'s pushes one at a time.
pub fn push_lock(state: &AppState, device: Uuid) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    let locks = state.service(|_| PushLocks::default());
    let mut map = locks.0.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(device).or_default().clone()
}

/// Is till `device` pushing now? Its online sales, returns and session opens wait for the push to
/// answer (`409 sync.push_in_progress`): the documents it made offline hold the numbers before
/// theirs, and a number taken between two of the push's transactions would stop the push for good.
pub fn pushing(state: &AppState, device: Uuid) -> bool {
    let locks = state.service(|_| PushLocks::default());
    let map = locks.0.lock().unwrap_or_else(|e| e.into_inner());
    map.get(&device)
        .is_some_and(|lock| lock.try_lock().is_err())
}

/// A register with a till enrolled for it takes its sales, returns and the opening of its cash
/// session from that till only, and an enrolled till does those on its own register only: else
/// 403 `device.register_bound`. Back-office work (voids, cash movements and closes, reports) is
/// not bound. `device` is the caller's session's device.
pub async fn check_register(
    state: &AppState,
    device: Option<Uuid>,
    register: Uuid,
) -> Result<(), ApiError> {
    let refused = |detail: &str| ApiError::Denied {
        code: "device.register_bound",
        detail: detail.to_owned(),
    };
    match (bound_to(state, register).await?, device) {
        (None, None) => Ok(()),
        (Some(bound), Some(device)) if bound == device => {
            if pushing(state, device) {
                return Err(ApiError::Conflict {
                    code: "sync.push_in_progress",
                    detail: "This till is pushing what it did offline: its documents hold the numbers before this one. Send it again once the push has answered.".to_owned(),
                });
            }
            Ok(())
        }
        (Some(_), _) => Err(refused(
            "This register has an enrolled till: its sales, returns and cash session are worked from that till.",
        )),
        (None, Some(_)) => Err(refused(
            "This till is enrolled for another register: it works on its own register only.",
        )),
    }
}

/// Marks device `id` revoked (`false` when it already was, or is unknown).
pub async fn revoke(
    conn: &mut PgConnection,
    id: Uuid,
    by: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE devices SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now)
    .bind(by)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// Device `id`.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Device>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DEVICE_COLUMNS} FROM {DEVICE_FROM} WHERE d.id = $1"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Every device, by id (ids are v7: by creation). A shop has a handful.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<Device>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DEVICE_COLUMNS} FROM {DEVICE_FROM} ORDER BY d.id"
    )))
    .fetch_all(conn)
    .await
}

/// Notes that device `id` was seen now with `app_version` (written at most once a minute, or
/// when the version changed).
pub async fn seen(
    conn: &mut PgConnection,
    id: Uuid,
    app_version: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO device_activity AS a (device_id, last_seen_at, app_version) VALUES ($1, $2, $3) \
         ON CONFLICT (device_id) DO UPDATE SET last_seen_at = $2, app_version = COALESCE($3, a.app_version) \
         WHERE a.last_seen_at IS NULL OR a.last_seen_at <= $4 \
               OR ($3::text IS NOT NULL AND a.app_version IS DISTINCT FROM $3)",
    )
    .bind(id)
    .bind(now)
    .bind(app_version)
    .bind(now - SEEN_EVERY)
    .execute(conn)
    .await
    .map(drop)
}

/// A till's application version from its request headers: 1 to 64 printable ASCII characters.
pub fn app_version(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(APP_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        })
        .map(str::to_owned)
}

/// The device credential a request carries, if any.
pub fn token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// 401 `device.invalid`: the credential is not that of an enrolled, unrevoked device.
pub fn invalid() -> ApiError {
    ApiError::Unauthorized {
        code: "device.invalid",
        detail: "The device credential (X-Device-Token) is not that of an enrolled device, or the device was revoked; enrol the till again.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_the_way_people_type_them() {
        let (shown, hash) = new_code();
        assert_eq!(shown.len(), 11);
        assert_eq!(&shown[5..6], "-");
        let typed = shown.to_lowercase().replace('-', " ");
        let normalized = normalize_code(&typed).unwrap();
        assert_eq!(code_hash(&normalized), hash);
        assert_eq!(normalize_code("o1il0-ABCDE").as_deref(), Some("01110ABCDE"));
        assert_eq!(
            normalize_code("ABCDE-ABCDU"),
            None,
            "U is not in the alphabet"
        );
        assert_eq!(normalize_code("ABCDE-ABCD"), None);
        assert_eq!(normalize_code(""), None);
    }

    #[test]
    fn a_token_is_long_random_and_hashed_trimmed() {
        let (a, hash) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("pdt_") && a.len() == 4 + 43, "{a}");
        assert_eq!(token_hash(&format!(" {a} ")), hash);
    }
}
