//! The one error type of the HTTP boundary, mapped to problem documents with stable codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::core::http::problem::{FieldError, Problem};

/// Everything a handler can fail with. Each variant has one stable `code`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the instance is not set up yet")]
    SetupRequired,
    #[error("the setup token is wrong")]
    SetupInvalidToken,
    #[error("the instance is already set up")]
    SetupAlreadyDone,
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the request body must be JSON")]
    UnsupportedMediaType,
    #[error("the request body is too large")]
    TooLarge,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("wrong username or password")]
    InvalidCredentials,
    #[error("too many failed logins; retry after {retry_after_secs}s")]
    Throttled { retry_after_secs: u64 },
    #[error("account locked; retry after {retry_after_secs}s")]
    Locked { retry_after_secs: u64 },
    #[error("no access token")]
    Unauthenticated,
    #[error("invalid access token")]
    InvalidToken,
    #[error("the session has ended")]
    SessionEnded,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("refresh token reused")]
    RefreshReused,
    /// The password hasher's queue is full (a login flood); nothing was counted.
    #[error("password checks are busy; retry after {retry_after_secs}s")]
    Busy { retry_after_secs: u64 },
    /// Too many unauthenticated requests from one client address.
    #[error("too many requests from this address; retry after {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("password change required")]
    PasswordChangeRequired,
    #[error("session limit reached")]
    SessionLimit,
    #[error("a second factor is required")]
    MfaRequired,
    #[error("wrong second factor")]
    MfaInvalid,
    #[error("MFA enrollment required")]
    MfaEnrollmentRequired,
    #[error("missing permission {0}")]
    Forbidden(String),
    #[error("may not write field {field} without {permission}")]
    FieldForbidden { field: String, permission: String },
    /// The target of a user administration holds a permission the caller does not.
    #[error("escalation: the target holds {0}")]
    Escalation(String),
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// 429 with a specific code: a limit other than time (connections held).
    #[error("{detail}")]
    Limited { code: &'static str, detail: String },
    /// 403 with a specific code: allowed in general, but not this one (another cashier's session).
    #[error("{detail}")]
    Denied { code: &'static str, detail: String },
    /// 400 with a specific code (a missing or malformed header, say).
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// 422 with a specific code: well-formed, but a business rule refuses it.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    /// 401 with a specific code: a credential besides the user's is missing or wrong (a device's).
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    /// 410 with a specific code: what the request points at is gone for good (an expired cursor).
    #[error("{detail}")]
    Gone { code: &'static str, detail: String },
    /// `what` is shown to the client; `cause` only goes to the log (5xx bodies carry no internals).
    #[error("{what} is unavailable: {cause}")]
    Unavailable { what: &'static str, cause: String },
    /// 503 while a restore switches databases (the reason is shown).
    #[error("maintenance: {0}")]
    Maintenance(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A validation failure of one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }

    /// `Ok` when the version the client sent is the current one, else
    /// [`ApiError::version_mismatch`].
    pub fn check_version(what: &str, current: i64, sent: i64) -> Result<(), ApiError> {
        match current == sent {
            true => Ok(()),
            false => Err(ApiError::version_mismatch(what, current, sent)),
        }
    }

    /// 409 `conflict.version_mismatch`: the client edited an outdated copy of `what`.
    pub fn version_mismatch(what: &str, current: i64, sent: i64) -> ApiError {
        ApiError::Conflict {
            code: "conflict.version_mismatch",
            detail: format!(
                "The {what} is at version {current}, not {sent}; reload it and try again."
            ),
        }
    }

    /// The stable machine code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::SetupRequired => "setup.required",
            ApiError::Maintenance(_) => "maintenance",
            ApiError::SetupInvalidToken => "setup.invalid_token",
            ApiError::SetupAlreadyDone => "setup.already_done",
            ApiError::MalformedJson(_) => "request.malformed_json",
            ApiError::UnsupportedMediaType => "request.unsupported_media_type",
            ApiError::TooLarge => "request.too_large",
            ApiError::Validation(_) => "validation.failed",
            ApiError::Unavailable { .. } => "service.unavailable",
            ApiError::Internal(_) => "internal",
            ApiError::InvalidCredentials => "auth.invalid_credentials",
            ApiError::Throttled { .. } => "auth.throttled",
            ApiError::Locked { .. } => "auth.locked",
            ApiError::Unauthenticated => "auth.unauthenticated",
            ApiError::InvalidToken => "auth.invalid_token",
            ApiError::SessionEnded => "auth.session_ended",
            ApiError::InvalidRefreshToken => "auth.invalid_refresh_token",
            ApiError::RefreshReused => "auth.refresh_reused",
            ApiError::Busy { .. } => "auth.busy",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::PasswordChangeRequired => "auth.password_change_required",
            ApiError::SessionLimit => "auth.session_limit",
            ApiError::MfaRequired => "auth.mfa_required",
            ApiError::MfaInvalid => "auth.mfa_invalid",
            ApiError::MfaEnrollmentRequired => "auth.mfa_enrollment_required",
            ApiError::Forbidden(_) => "rbac.forbidden",
            ApiError::FieldForbidden { .. } => "rbac.field_forbidden",
            ApiError::Escalation(_) => "rbac.escalation",
            ApiError::NotFound { code, .. }
            | ApiError::Limited { code, .. }
            | ApiError::Denied { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::BadRequest { code, .. }
            | ApiError::Unauthorized { code, .. }
            | ApiError::Gone { code, .. }
            | ApiError::Unprocessable { code, .. } => code,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::SetupRequired | ApiError::Unavailable { .. } | ApiError::Maintenance(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::SetupInvalidToken => StatusCode::FORBIDDEN,
            ApiError::SetupAlreadyDone => StatusCode::CONFLICT,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::InvalidCredentials
            | ApiError::Unauthenticated
            | ApiError::InvalidToken
            | ApiError::SessionEnded
            | ApiError::InvalidRefreshToken
            | ApiError::RefreshReused
            | ApiError::MfaRequired
            | ApiError::MfaInvalid
            | ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Gone { .. } => StatusCode::GONE,
            ApiError::Throttled { .. }
            | ApiError::Locked { .. }
            | ApiError::Busy { .. }
            | ApiError::RateLimited { .. }
            | ApiError::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PasswordChangeRequired
            | ApiError::Forbidden(_)
            | ApiError::FieldForbidden { .. }
            | ApiError::Escalation(_)
            | ApiError::Denied { .. }
            | ApiError::MfaEnrollmentRequired => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::SessionLimit => StatusCode::CONFLICT,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::SetupRequired => "Setup required",
            ApiError::Maintenance(_) => "Maintenance",
            ApiError::SetupInvalidToken => "Invalid setup token",
            ApiError::SetupAlreadyDone => "Already set up",
            ApiError::MalformedJson(_) => "Malformed JSON",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::TooLarge => "Request body too large",
            ApiError::Validation(_) => "Validation failed",
            ApiError::Unavailable { .. } => "Service unavailable",
            ApiError::Internal(_) => "Internal server error",
            ApiError::InvalidCredentials => "Invalid credentials",
            ApiError::Throttled { .. } => "Too many failed logins",
            ApiError::Locked { .. } => "Account locked",
            ApiError::Unauthenticated => "Authentication required",
            ApiError::InvalidToken => "Invalid access token",
            ApiError::SessionEnded => "Session ended",
            ApiError::InvalidRefreshToken => "Invalid refresh token",
            ApiError::RefreshReused => "Refresh token reused",
            ApiError::Busy { .. } => "Busy",
            ApiError::RateLimited { .. } => "Too many requests",
            ApiError::PasswordChangeRequired => "Password change required",
            ApiError::SessionLimit => "Too many sessions",
            ApiError::MfaRequired => "Second factor required",
            ApiError::MfaInvalid => "Wrong second factor",
            ApiError::MfaEnrollmentRequired => "MFA enrollment required",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::FieldForbidden { .. } => "Field forbidden",
            ApiError::Escalation(_) => "Beyond your own permissions",
            ApiError::NotFound { .. } => "Not found",
            ApiError::Denied { .. } => "Forbidden",
            ApiError::Limited { .. } => "Too many",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::BadRequest { .. } => "Bad request",
            ApiError::Unprocessable { .. } => "Unprocessable request",
            ApiError::Unauthorized { .. } => "Authentication required",
            ApiError::Gone { .. } => "Gone",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::SetupRequired => {
                "This instance is not set up yet: call POST /api/v1/setup with the token from <data_dir>/setup-token, \
                 or run `plugpos init`."
                    .to_owned()
            }
            ApiError::Maintenance(reason) => {
                format!("The server is in maintenance mode ({reason}); try again in a few minutes.")
            }
            ApiError::SetupInvalidToken => {
                "The setup token does not match the one in <data_dir>/setup-token.".to_owned()
            }
            ApiError::SetupAlreadyDone => "This instance is already set up; setup runs once.".to_owned(),
            ApiError::MalformedJson(why) => format!("The request body is not valid JSON: {why}."),
            ApiError::UnsupportedMediaType => {
                "Send the request body as JSON with `Content-Type: application/json`.".to_owned()
            }
            ApiError::TooLarge => "The request body is larger than the server accepts.".to_owned(),
            ApiError::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("Invalid field(s): {}.", fields.join(", "))
            }
            ApiError::Unavailable { what, .. } => format!("The {what} is unavailable; try again shortly."),
            // 5xx bodies never carry internals; the cause is in the log under the same request id.
            ApiError::Internal(_) => "The server failed to handle the request; see its log.".to_owned(),
            ApiError::InvalidCredentials => "The username or password is wrong.".to_owned(),
            ApiError::Throttled { retry_after_secs } => {
                format!("Too many failed logins for this account; try again in {retry_after_secs} s.")
            }
            ApiError::Locked { retry_after_secs } => format!(
                "This account is locked after too many failed logins; try again in {retry_after_secs} s or ask an admin to unlock it."
            ),
            ApiError::Unauthenticated => "Send an access token: `Authorization: Bearer <token>`.".to_owned(),
            ApiError::InvalidToken => "The access token is invalid or expired; refresh it or log in again.".to_owned(),
            ApiError::SessionEnded => "This session has ended; log in again.".to_owned(),
            ApiError::InvalidRefreshToken => "The refresh token is not known; log in again.".to_owned(),
            ApiError::RefreshReused => {
                "This refresh token was already used; the session has been ended for safety. Log in again.".to_owned()
            }
            ApiError::Busy { retry_after_secs } => format!(
                "The server is checking too many passwords at once; try again in {retry_after_secs} s."
            ),
            ApiError::RateLimited { retry_after_secs } => format!(
                "Too many requests without a login from this address; try again in {retry_after_secs} s."
            ),
            ApiError::PasswordChangeRequired => {
                "Change your password first (POST /api/v1/auth/password).".to_owned()
            }
            ApiError::SessionLimit => {
                "This user has the most sessions allowed open; log out elsewhere first.".to_owned()
            }
            ApiError::MfaRequired => {
                "This account uses two-factor authentication: send `totp_code` (or a `recovery_code`) with the login.".to_owned()
            }
            ApiError::MfaInvalid => "The authentication code or recovery code is wrong or already used.".to_owned(),
            ApiError::MfaEnrollmentRequired => {
                "Your role requires two-factor authentication: enroll first (POST /api/v1/auth/mfa/enroll, then /verify).".to_owned()
            }
            ApiError::Forbidden(permission) => format!("Missing permission `{permission}`."),
            ApiError::Escalation(permission) => format!(
                "This user holds `{permission}`, which you do not: only someone who holds every permission of a user may manage them."
            ),
            ApiError::FieldForbidden { field, permission } => {
                format!("Setting `{field}` needs permission `{permission}`.")
            }
            ApiError::NotFound { detail, .. }
            | ApiError::Limited { detail, .. }
            | ApiError::Denied { detail, .. }
            | ApiError::Conflict { detail, .. }
            | ApiError::BadRequest { detail, .. }
            | ApiError::Unauthorized { detail, .. }
            | ApiError::Gone { detail, .. }
            | ApiError::Unprocessable { detail, .. } => detail.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed")
            }
            ApiError::Unavailable { what, cause } => {
                tracing::warn!(%what, %cause, "request failed: dependency unavailable")
            }
            _ => {}
        }
        let status = self.status();
        let mut headers = Vec::new();
        match &self {
            ApiError::Throttled { retry_after_secs }
            | ApiError::Locked { retry_after_secs }
            | ApiError::Busy { retry_after_secs }
            | ApiError::RateLimited { retry_after_secs } => {
                headers.push((header::RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
            }
            _ if status == StatusCode::UNAUTHORIZED => {
                headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            _ => {}
        }
        let mut problem = Problem::new(status, self.code(), self.title(), self.detail());
        if let ApiError::Validation(errors) = self {
            problem = problem.with_errors(errors);
        }
        let mut response = problem.into_response();
        response.headers_mut().extend(headers);
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                ApiError::Unavailable {
                    what: "database",
                    cause: e.to_string(),
                }
            }
            // A document, cash movement or stock movement dated inside a closed business day:
            // refused by the database itself (the `period_closed` triggers), whoever writes.
            other if closed_period(&other) => ApiError::Conflict {
                code: "period.closed",
                detail: "The business day this would be dated in is closed (a Z closing was made); nothing can be added to it.".to_owned(),
            },
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}

/// Did the database refuse a write dated inside a closed period (constraint `period_closed`)?
fn closed_period(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.constraint())
        .is_some_and(|c| c == "period_closed")
}
