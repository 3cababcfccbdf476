//! `/api/v1/auth/...`: login, refresh, logout, me, password change.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::auth::context::{Authenticated, RequestOrigin};
use crate::core::auth::login::{self, Issued};
use crate::core::auth::{approver, mfa};
use crate::core::devices;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson};
use crate::core::state::AppState;

/// Credentials.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(example = "cashier1")]
    pub username: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// A name for the workstation this login comes from, stored with the session, for tills that
    /// are not enrolled. On an enrolled till (`X-Device-Token`) the device's id is the workstation
    /// and this is ignored.
    #[schema(example = "till-2")]
    pub workstation_id: Option<String>,
    /// The current code of the authenticator app, for users with two-factor authentication.
    pub totp_code: Option<String>,
    /// A one-time recovery code instead of `totp_code`.
    pub recovery_code: Option<String>,
}

/// A refresh token to rotate.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String, format = Password)]
    pub refresh_token: SecretString,
}

/// Tokens for a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque, single use: exchange it at `/api/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: UserSummary,
    /// When true, every endpoint but password change, `me` and logout answers 403 until the password is changed.
    pub password_change_required: bool,
}

/// The user a session belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSummary {
    pub id: Uuid,
    pub username: String,
    pub roles: Vec<String>,
}

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub id: Uuid,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<String>,
    /// Effective permissions (the union of the roles').
    pub permissions: Vec<String>,
    pub password_change_required: bool,
    /// When true, every endpoint but the self-service ones answers 403 until MFA is enrolled.
    pub mfa_enrollment_required: bool,
    /// Whether the caller has a confirmed second factor (authenticator app).
    pub mfa_enabled: bool,
    pub session_id: Uuid,
}

/// A password change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    pub new_password: SecretString,
}

/// An approver PIN to set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinChange {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretString,
    /// 4 to 8 digits.
    #[schema(value_type = String, format = Password, example = "4821")]
    pub pin: SecretString,
}

fn tokens(issued: Issued) -> Json<TokenResponse> {
    Json(TokenResponse {
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        user: UserSummary {
            id: issued.user_id,
            username: issued.username,
            roles: issued.roles,
        },
        password_change_required: issued.password_change_required,
    })
}

/// Log in with username and password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        (status = 401, description = "Wrong username or password (`auth.invalid_credentials`), the same for unknown users and for a disabled account; second factor missing (`auth.mfa_required`) or wrong (`auth.mfa_invalid`); an `X-Device-Token` that is not an enrolled device's (`device.invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Session limit reached with `refuse_new` (`auth.session_limit`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Throttled (`auth.throttled`) or locked (`auth.locked`) for this account from this address or everywhere, password checks busy (`auth.busy`), or too many requests from this address (`rate_limited`); see `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login_handler(
    State(state): State<AppState>,
    RequestOrigin(mut origin): RequestOrigin,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    // The id goes into every audit record and its exports: no control characters, nothing a
    // spreadsheet could run as a formula.
    if let Some(workstation) = &request.workstation_id
        && !safe_workstation_id(workstation)
    {
        return Err(ApiError::invalid(
            "workstation_id",
            "must be 1 to 128 characters without control characters, not starting with a space, =, +, - or @",
        ));
    }
    // Longer names cannot exist; refusing them keeps junk out of the attempt counters.
    if request.username.is_empty() || request.username.chars().count() > 128 {
        return Err(ApiError::invalid("username", "must be 1 to 128 characters"));
    }
    origin.workstation_id = request.workstation_id;
    // On an enrolled till the session is the device's, and the device is its workstation.
    if let Some(device) = device_of(&state, &headers).await? {
        origin.device_id = Some(device);
        origin.workstation_id = Some(device.to_string());
    }
    let second = login::SecondFactor {
        totp_code: request.totp_code.as_deref(),
        recovery_code: request.recovery_code.as_deref(),
    };
    login::login(&state, &request.username, request.password, second, &origin)
        .await
        .map(tokens)
}

/// Exchange a refresh token for a new access and refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens; the presented refresh token is now used", body = TokenResponse),
        (status = 401, description = "Unknown (`auth.invalid_refresh_token`), reused (`auth.refresh_reused`: the session is ended) or ended session (`auth.session_ended`); a till's session refreshed without its device's `X-Device-Token` (`device.invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn refresh_handler(
    State(state): State<AppState>,
    RequestOrigin(mut origin): RequestOrigin,
    headers: HeaderMap,
    ApiJson(request): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    use secrecy::ExposeSecret;
    origin.device_id = device_of(&state, &headers).await?;
    login::refresh(&state, request.refresh_token.expose_secret(), &origin)
        .await
        .map(tokens)
}

/// The enrolled device whose credential the request carries (noted as seen), `None` without one;
/// 401 `device.invalid` for a credential that is not an enrolled, unrevoked device's.
async fn device_of(state: &AppState, headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
    let Some(token) = devices::token(headers) else {
        return Ok(None);
    };
    let mut conn = state.pool().acquire().await?;
    let device = devices::by_token(&mut conn, token)
        .await?
        .ok_or_else(devices::invalid)?;
    devices::seen(
        &mut conn,
        device,
        devices::app_version(headers).as_deref(),
        state.clock().now(),
    )
    .await?;
    Ok(Some(device))
}

/// End this session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out; the access and refresh tokens no longer work"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logout_handler(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<StatusCode, ApiError> {
    login::logout(&state, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller, their roles and effective permissions.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn me_handler(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Json<Me>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let mfa_enabled: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_mfa WHERE user_id = $1 AND confirmed_at IS NOT NULL)",
    )
    .bind(caller.user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Json(Me {
        id: caller.user_id,
        username: caller.username,
        display_name: caller.display_name,
        roles: caller.roles,
        permissions: caller.permissions.into_iter().collect(),
        password_change_required: caller.password_change_required,
        mfa_enrollment_required: caller.mfa_enrollment_required,
        mfa_enabled,
        session_id: caller.session_id,
    }))
}

/// Change one's own password. Every session of the user ends; log in again with the new password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "auth",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong current password or weak new one (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords (`auth.throttled`, `auth.locked`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn password_handler(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(request): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    login::change_password(
        &state,
        &caller,
        request.current_password,
        request.new_password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set (or replace, which unlocks it) one's approver PIN: 4 to 8 digits a manager types on a
/// cashier's till instead of their password to approve (`POST /api/v1/approvals`). Needs the
/// current password, checked like a password change.
#[utoipa::path(put, path = "/api/v1/auth/pin", tag = "auth", security(("bearer" = [])), request_body = PinChange,
    responses(
        (status = 204, description = "Set"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong current password or a PIN that is not 4 to 8 digits (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many wrong passwords (`auth.throttled`, `auth.locked`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_pin(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(request): ApiJson<PinChange>,
) -> Result<StatusCode, ApiError> {
    approver::set_pin(&state, &caller, request.current_password, request.pin).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Remove one's approver PIN.
#[utoipa::path(delete, path = "/api/v1/auth/pin", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No PIN set (`auth.no_pin`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn remove_pin(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<StatusCode, ApiError> {
    approver::remove_pin(&state, &caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Enrollment {
    /// Base32, for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/...`, for a QR code.
    pub otpauth_uri: String,
}

/// A code from the authenticator app.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyCode {
    #[schema(example = "492039")]
    pub code: String,
}

/// Recovery codes: shown once, each usable once instead of a TOTP code.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

/// Start TOTP enrollment (replaces an unconfirmed one).
#[utoipa::path(post, path = "/api/v1/auth/mfa/enroll", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "Secret to add to an authenticator app; confirm with /verify", body = Enrollment),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "MFA already enabled (`auth.mfa_already_enabled`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn enroll(
    State(state): State<AppState>,
    caller: Authenticated,
) -> Result<Json<Enrollment>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let started = mfa::start_enrolment(&state, &mut conn, caller.user_id, &caller.username).await?;
    Ok(Json(Enrollment {
        secret: started.secret,
        otpauth_uri: started.otpauth_uri,
    }))
}

/// Confirm enrollment with a first code; returns the recovery codes (shown only now).
#[utoipa::path(post, path = "/api/v1/auth/mfa/verify", tag = "auth", security(("bearer" = [])), request_body = VerifyCode,
    responses(
        (status = 200, description = "MFA enabled", body = RecoveryCodes),
        (status = 401, description = "Not authenticated", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No enrollment pending (`auth.mfa_not_enrolling`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong code (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Authenticated,
    ApiJson(body): ApiJson<VerifyCode>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = mfa::confirm(&state, &caller, &body.code).await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// A workstation id as a till names itself (`caisse n°1`, `POS (front)`): 1 to 128 characters,
/// no control characters, not starting with a blank or with what a spreadsheet runs as a formula
/// (`=`, `+`, `-`, `@`).
fn safe_workstation_id(id: &str) -> bool {
    (1..=128).contains(&id.chars().count())
        && !id.starts_with(['=', '+', '-', '@', ' '])
        && !id.chars().any(char::is_control)
}

/// Login, tokens, the caller's own account and MFA, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::{Public, SelfService};
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Public, routes!(login_handler)))
        .routes(declare(Public, routes!(refresh_handler)))
        .routes(declare(SelfService, routes!(logout_handler)))
        .routes(declare(SelfService, routes!(me_handler)))
        .routes(declare(SelfService, routes!(password_handler)))
        .routes(declare(SelfService, routes!(set_pin, remove_pin)))
        .routes(declare(SelfService, routes!(enroll)))
        .routes(declare(SelfService, routes!(verify)))
}
