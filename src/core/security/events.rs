//! The security event log (`security_events`): logins, lockouts, token reuse, denials,
//! privilege and password changes.

use std::net::IpAddr;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::http::request_id;
use crate::shared::ids::new_id;

/// The kinds of security event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    AccountLocked,
    AccountUnlocked,
    RefreshTokenReused,
    PermissionDenied,
    PrivilegeChanged,
    PasswordChanged,
    PasswordReset,
    MfaChanged,
    UserDisabled,
    UserEnabled,
    Logout,
    AuditVerificationFailed,
    SensitiveExport,
    BackupFailed,
    BackupInvalid,
    /// A copy at a backup target is missing or damaged (it is copied again).
    BackupCopyFailed,
    /// A backup target has no verified copy of a backup more than a day old.
    BackupTargetBehind,
    RestoreStarted,
    RestoreCompleted,
    RestoreFailed,
    /// An approver PIN was locked after too many wrong tries.
    PinLocked,
    /// A suspicious pattern rule fired (`GET /api/v1/flags`).
    SuspiciousActivity,
}

impl EventKind {
    /// The stable name stored and served.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LoginSucceeded => "login_succeeded",
            EventKind::LoginFailed => "login_failed",
            EventKind::LoginThrottled => "login_throttled",
            EventKind::AccountLocked => "account_locked",
            EventKind::AccountUnlocked => "account_unlocked",
            EventKind::RefreshTokenReused => "refresh_token_reused",
            EventKind::PermissionDenied => "permission_denied",
            EventKind::PrivilegeChanged => "privilege_changed",
            EventKind::PasswordChanged => "password_changed",
            EventKind::PasswordReset => "password_reset",
            EventKind::MfaChanged => "mfa_changed",
            EventKind::UserDisabled => "user_disabled",
            EventKind::UserEnabled => "user_enabled",
            EventKind::Logout => "logout",
            EventKind::AuditVerificationFailed => "audit_verification_failed",
            EventKind::SensitiveExport => "sensitive_export",
            EventKind::BackupFailed => "backup_failed",
            EventKind::BackupInvalid => "backup_invalid",
            EventKind::BackupCopyFailed => "backup_copy_failed",
            EventKind::BackupTargetBehind => "backup_target_behind",
            EventKind::RestoreStarted => "restore_started",
            EventKind::RestoreCompleted => "restore_completed",
            EventKind::RestoreFailed => "restore_failed",
            EventKind::PinLocked => "pin_locked",
            EventKind::SuspiciousActivity => "suspicious_activity",
        }
    }
}

/// Where a request came from (recorded with every event).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub workstation_id: Option<String>,
    /// The enrolled device (till) the request came from (`core::devices`).
    pub device_id: Option<Uuid>,
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct SecurityEvent<'a> {
    pub kind: EventKind,
    pub user_id: Option<Uuid>,
    pub username: Option<&'a str>,
    pub origin: &'a Origin,
    pub details: Value,
}

/// Appends `event`, stamped with the current request id.
pub async fn record(conn: &mut PgConnection, event: SecurityEvent<'_>) -> Result<(), sqlx::Error> {
    tracing::info!(kind = event.kind.as_str(), user_id = ?event.user_id, "security event");
    sqlx::query(
        "INSERT INTO security_events (id, kind, user_id, username, workstation_id, ip, request_id, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(new_id())
    .bind(event.kind.as_str())
    .bind(event.user_id)
    .bind(event.username)
    .bind(event.origin.workstation_id.as_deref())
    .bind(event.origin.ip)
    .bind(request_id::current())
    .bind(event.details)
    .execute(conn)
    .await
    .map(|_| ())
}
