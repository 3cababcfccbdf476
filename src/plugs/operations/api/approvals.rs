//! `operations.approvals` for other modules: using the approval a request carries.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::http::ApiError;
pub use crate::plugs::operations::approvals::store::{Used, Wanted};

/// 403 `approval.invalid`: unknown, used, expired, or given for another action, scope or cashier.
pub fn invalid() -> ApiError {
    ApiError::Denied {
        code: "approval.invalid",
        detail: "This approval is unknown, used already, expired, or was given for another action, register, sale, amount or cashier; ask for a new one (POST /api/v1/approvals).".to_owned(),
    }
}

/// 403 `approval.required`: the caller may not do this alone.
pub fn required(action: &str) -> ApiError {
    ApiError::Denied {
        code: "approval.required",
        detail: format!(
            "This needs an approval (`approval_ref`) from someone holding {action} (POST /api/v1/approvals)."
        ),
    }
}

/// Uses approval `approval_ref` for `wanted` at `now`, inside the caller's transaction when
/// `conn` is one (so a rolled-back action leaves it unused): who approved, or 403 `approval.invalid`.
pub async fn consume(
    conn: &mut PgConnection,
    approval_ref: &str,
    wanted: &Wanted<'_>,
    now: DateTime<Utc>,
) -> Result<Used, ApiError> {
    let Ok(id) = approval_ref.trim().parse::<Uuid>() else {
        return Err(invalid());
    };
    crate::plugs::operations::approvals::store::consume(conn, id, wanted, now)
        .await?
        .ok_or_else(invalid)
}

/// The approval rule of one action: a caller who holds the action's permission (`held`) acts
/// alone; anyone else needs an approval, which is used here (inside the caller's transaction).
/// An approval sent by a holder is used too, so the record names it.
pub async fn unless_held(
    conn: &mut PgConnection,
    held: bool,
    approval_ref: Option<&str>,
    wanted: &Wanted<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Used>, ApiError> {
    match (approval_ref, held) {
        (Some(approval_ref), _) => consume(conn, approval_ref, wanted, now).await.map(Some),
        (None, true) => Ok(None),
        (None, false) => Err(required(wanted.action)),
    }
}

/// Like [`consume`], but an approval that does not fit is `None` rather than an error (to try
/// several a request carries).
pub async fn try_consume(
    conn: &mut PgConnection,
    approval_ref: &str,
    wanted: &Wanted<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Used>, sqlx::Error> {
    let Ok(id) = approval_ref.trim().parse::<Uuid>() else {
        return Ok(None);
    };
    crate::plugs::operations::approvals::store::consume(conn, id, wanted, now).await
}
