//! Who is calling: the request's origin (IP, user agent) and its authenticated user, checked
//! against the session on every request, so logout, disabling a user or changing their
//! password or roles takes effect at once rather than when the access token expires.
//!
//! The session's row (with the user's roles and permissions) is cached by session id until any
//! of the tables it is read from changes (see [`crate::core::db::changes`]): a change made through
//! the API applies to the next request; one made outside it (SQL, another process) as soon as
//! PostgreSQL's notification arrives, within milliseconds. Expiry is checked on every request.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::core::audit::Actor;
use crate::core::devices;
use crate::core::http::ApiError;
use crate::core::http::request_id;
use crate::core::integrations;
use crate::core::security::events::{self, EventKind, Origin, SecurityEvent};
use crate::core::state::AppState;

/// Where the request came from.
#[derive(Debug, Clone, Default)]
pub struct RequestOrigin(pub Origin);

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(512).collect());
        Ok(RequestOrigin(Origin {
            ip,
            user_agent,
            workstation_id: None,
            device_id: None,
        }))
    }
}

/// An authenticated caller, even one who must change their password first (only the password
/// change, `me` and logout accept this; everything else takes [`AuthContext`]).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: Uuid,
    pub username: String,
    pub display_name: String,
    pub session_id: Uuid,
    pub roles: Vec<String>,
    pub permissions: BTreeSet<String>,
    pub password_change_required: bool,
    /// The user's role requires two-factor authentication and they have not enrolled yet.
    pub mfa_enrollment_required: bool,
    pub origin: Origin,
    /// The API key the request authenticated with (`core::integrations`), if it was not a
    /// user's session: then `user_id` is the key's maker, `username` is `api-key:<prefix>` and
    /// the permissions are the key's.
    pub api_key: Option<Uuid>,
}

/// Sessions kept in memory at most (a shop has a few dozen).
const SESSION_CACHE: usize = 10_000;

#[derive(Debug, sqlx::FromRow)]
struct SessionRow {
    user_id: Uuid,
    ended_at: Option<DateTime<Utc>>,
    expires_at: DateTime<Utc>,
    stamp_current: bool,
    disabled_at: Option<DateTime<Utc>>,
    username: String,
    display_name: String,
    password_change_required: bool,
    workstation_id: Option<String>,
    device_id: Option<Uuid>,
    /// The device's credential hash, while it is not revoked.
    device_token_hash: Option<Vec<u8>>,
    mfa_enrollment_required: bool,
    roles: Vec<String>,
    permissions: Vec<String>,
}

/// An authenticated caller who may use the API.
#[derive(Debug, Clone)]
pub struct AuthContext(pub Authenticated);

impl std::ops::Deref for AuthContext {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        &self.0
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The route guard has already checked this request.
        if let Some(caller) = parts.extensions.get::<Authenticated>() {
            return Ok(caller.clone());
        }
        if let Some(AuthContext(caller)) = parts.extensions.get::<AuthContext>() {
            return Ok(caller.clone());
        }
        let RequestOrigin(mut origin) = RequestOrigin::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or(ApiError::Unauthenticated)?;
        let now = state.clock().now();
        if token.trim().starts_with(integrations::KEY_PREFIX) {
            return with_api_key(state, token.trim(), origin, now).await;
        }
        let claims = state
            .signing_key()
            .verify(token.trim(), u64::try_from(now.timestamp()).unwrap_or(0))
            .map_err(|_| ApiError::InvalidToken)?;
        let row = session_row(state, claims.sid).await?;
        let Some(row) = row else {
            return Err(ApiError::SessionEnded);
        };
        if row.user_id != claims.sub
            || row.ended_at.is_some()
            || row.expires_at <= now
            || !row.stamp_current
            || row.disabled_at.is_some()
        {
            return Err(ApiError::SessionEnded);
        }
        if let Some(device) = row.device_id {
            check_device(&parts.headers, row.device_token_hash.as_deref())?;
            origin.device_id = Some(device);
        }
        origin.workstation_id = row.workstation_id.clone();
        Ok(Authenticated {
            user_id: row.user_id,
            username: row.username.clone(),
            display_name: row.display_name.clone(),
            session_id: claims.sid,
            roles: row.roles.clone(),
            permissions: row.permissions.iter().cloned().collect(),
            password_change_required: row.password_change_required,
            mfa_enrollment_required: row.mfa_enrollment_required,
            origin,
            api_key: None,
        })
    }
}

/// A request authenticated by an API key: the key must be known, not revoked, not expired, and its
/// maker not disabled (each `401 auth.invalid_api_key`). Its use is noted (time and address).
async fn with_api_key(
    state: &AppState,
    key: &str,
    origin: Origin,
    now: DateTime<Utc>,
) -> Result<Authenticated, ApiError> {
    let found = integrations::by_key(state, key).await?;
    let usable =
        found.filter(|k| !k.revoked && !k.maker_disabled && k.expires_at.is_none_or(|at| at > now));
    let Some(key) = usable else {
        return Err(ApiError::Unauthorized {
            code: "auth.invalid_api_key",
            detail: "This API key is unknown, revoked or expired (or its maker was disabled)."
                .to_owned(),
        });
    };
    integrations::note_use(state.pool(), key.id, origin.ip, now).await?;
    Ok(Authenticated {
        user_id: key.created_by,
        username: format!("api-key:{}", key.prefix),
        display_name: key.name.clone(),
        session_id: key.id,
        roles: vec!["api_key".to_owned()],
        permissions: key.permissions.iter().cloned().collect(),
        password_change_required: false,
        mfa_enrollment_required: false,
        origin,
        api_key: Some(key.id),
    })
}

/// A session opened on an enrolled device is used only with that device's credential: missing,
/// it is 401 `device.required`; another one, or the device's once it was revoked, 401
/// `device.invalid` (revoking also ends the session).
fn check_device(headers: &axum::http::HeaderMap, stored: Option<&[u8]>) -> Result<(), ApiError> {
    use subtle::ConstantTimeEq;
    let Some(token) = devices::token(headers) else {
        return Err(ApiError::Unauthorized {
            code: "device.required",
            detail: "This session was opened on an enrolled till: send its credential in `X-Device-Token` with every request.".to_owned(),
        });
    };
    let sent = devices::token_hash(token);
    match stored {
        Some(stored) if bool::from(sent.as_slice().ct_eq(stored)) => Ok(()),
        _ => Err(devices::invalid()),
    }
}

/// The permissions session `session` of `user` holds now (its roles may have changed since it
/// began); `None` once it is no longer current (ended, expired, password or roles reset, user
/// disabled). From the cache, which forgets after every change to users, roles and sessions.
pub async fn session_permissions(
    state: &AppState,
    session: Uuid,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<BTreeSet<String>>, ApiError> {
    let Some(row) = session_row(state, session).await? else {
        return Ok(None);
    };
    let current = row.user_id == user
        && row.ended_at.is_none()
        && row.expires_at > now
        && row.stamp_current
        && row.disabled_at.is_none();
    Ok(current.then(|| row.permissions.iter().cloned().collect()))
}

/// The caller of session `session` when it is not presented as a bearer token (the admin console's
/// cookie): the same checks as a token's (ended, expired, password or roles reset, user disabled).
/// A till's session never is: it goes with its device's credential. `SessionEnded` otherwise.
pub async fn session_caller(
    state: &AppState,
    session: Uuid,
    mut origin: Origin,
) -> Result<Authenticated, ApiError> {
    let now = state.clock().now();
    let Some(row) = session_row(state, session).await? else {
        return Err(ApiError::SessionEnded);
    };
    if row.ended_at.is_some()
        || row.expires_at <= now
        || !row.stamp_current
        || row.disabled_at.is_some()
        || row.device_id.is_some()
    {
        return Err(ApiError::SessionEnded);
    }
    origin.workstation_id = row.workstation_id.clone();
    Ok(Authenticated {
        user_id: row.user_id,
        username: row.username.clone(),
        display_name: row.display_name.clone(),
        session_id: session,
        roles: row.roles.clone(),
        permissions: row.permissions.iter().cloned().collect(),
        password_change_required: row.password_change_required,
        mfa_enrollment_required: row.mfa_enrollment_required,
        origin,
        api_key: None,
    })
}

/// The session's row, from the cache or the database.
async fn session_row(state: &AppState, session: Uuid) -> Result<Option<Arc<SessionRow>>, ApiError> {
    let row = state
        .cache::<Uuid, Arc<SessionRow>>(SESSION_CACHE)
        .get_or_read(session, || async {
            let row: Option<SessionRow> = sqlx::query_as(
                "SELECT s.user_id, s.ended_at, s.expires_at, s.security_stamp = u.security_stamp AS stamp_current, \
                        u.disabled_at, u.username, u.display_name, u.password_change_required, s.workstation_id, \
                        s.device_id, d.token_hash AS device_token_hash, \
                        (EXISTS (SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
                                 JOIN settings st ON st.key = 'security.mfa_required_roles' \
                                 WHERE ur.user_id = u.id AND st.value ? r.name) \
                         AND NOT EXISTS (SELECT 1 FROM user_mfa m WHERE m.user_id = u.id AND m.confirmed_at IS NOT NULL)) \
                        AS mfa_enrollment_required, \
                        ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
                              WHERE ur.user_id = u.id ORDER BY r.name) AS roles, \
                        ARRAY(SELECT DISTINCT rp.permission FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
                              WHERE ur.user_id = u.id) AS permissions \
                 FROM sessions s JOIN users u ON u.id = s.user_id \
                 LEFT JOIN devices d ON d.id = s.device_id AND d.revoked_at IS NULL WHERE s.id = $1",
            )
            .bind(session)
            .fetch_optional(state.pool())
            .await?;
            Ok::<_, sqlx::Error>(row.map(Arc::new))
        })
        .await?;
    Ok(row)
}

impl FromRequestParts<AppState> for AuthContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<AuthContext>() {
            return Ok(caller.clone());
        }
        let caller = Authenticated::from_request_parts(parts, state).await?;
        if caller.password_change_required {
            return Err(ApiError::PasswordChangeRequired);
        }
        if caller.mfa_enrollment_required {
            return Err(ApiError::MfaEnrollmentRequired);
        }
        Ok(AuthContext(caller))
    }
}

impl Authenticated {
    /// Refuses an API key (403 `auth.api_key_not_allowed`): what a person must do themselves,
    /// such as managing API keys and webhooks (a leaked key could otherwise make others that
    /// outlive its revocation).
    pub fn refuse_api_key(&self) -> Result<(), ApiError> {
        match self.api_key {
            Some(_) => Err(ApiError::Denied {
                code: "auth.api_key_not_allowed",
                detail: "This needs a person's login, not an API key.".to_owned(),
            }),
            None => Ok(()),
        }
    }

    /// Does the caller hold `permission`?
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    /// Refuses with 403 `rbac.forbidden` (and records the denial) unless the caller holds `permission`.
    pub async fn require(&self, state: &AppState, permission: &str) -> Result<(), ApiError> {
        if self.has(permission) {
            return Ok(());
        }
        let mut conn = state.pool().acquire().await?;
        events::record(
            &mut conn,
            SecurityEvent {
                kind: EventKind::PermissionDenied,
                user_id: Some(self.user_id),
                username: Some(&self.username),
                origin: &self.origin,
                details: json!({"permission": permission}),
            },
        )
        .await?;
        Err(ApiError::Forbidden(permission.to_owned()))
    }
}

impl Actor {
    /// A logged-in user, on the current request (here, beside the caller it is made from: the
    /// audit log knows actors, not how callers authenticate).
    pub fn user(caller: &Authenticated) -> Actor {
        Actor {
            user_id: Some(caller.user_id),
            username: Some(caller.username.clone()),
            role: Some(caller.roles.join(",")),
            workstation_id: caller.origin.workstation_id.clone(),
            branch_id: None,
            request_id: request_id::current(),
        }
    }
}
