//! `GET /api/v1/audit/verify`.

use axum::Json;
use axum::extract::State;
use serde_json::json;

use crate::core::audit::{chain, verify};
use crate::core::auth::context::AuthContext;
use crate::core::http::ApiError;
use crate::core::http::problem::Problem;
use crate::core::security::events::{self, EventKind, SecurityEvent};
use crate::core::state::AppState;

/// Recompute the audit chain and report the first broken link.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, description = "The verification report (`ok` false when the chain is broken)", body = verify::Report),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_handler(
    State(state): State<AppState>,
    caller: AuthContext,
) -> Result<Json<verify::Report>, ApiError> {
    chain::chain_pending(state.pool()).await?;
    let report = verify::verify(state.pool()).await?;
    if !report.ok {
        let mut conn = state.pool().acquire().await?;
        events::record(
            &mut conn,
            SecurityEvent {
                kind: EventKind::AuditVerificationFailed,
                user_id: Some(caller.user_id),
                username: Some(&caller.username),
                origin: &caller.origin,
                details: json!({"first_bad_seq": report.first_bad_seq, "reason": report.reason}),
            },
        )
        .await?;
    }
    Ok(Json(report))
}
