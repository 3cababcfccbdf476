//! `GET /api/v1/audit/verify`, `POST/GET /api/v1/audit/checkpoints`.

use axum::Json;
use axum::extract::State;
use serde_json::json;

use axum::http::StatusCode;

use crate::core::audit::checkpoint::{self, Checkpoint};
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
    let report =
        verify::verify_instance(state.pool(), &state.data_dir().keys(), Vec::new()).await?;
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

/// Sign the current chain head. Save the returned JSON outside this machine: `plugpos audit
/// verify --checkpoint FILE` then detects a truncated or rewritten chain.
#[utoipa::path(post, path = "/api/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 201, description = "The signed checkpoint", body = Checkpoint),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_checkpoint(
    State(state): State<AppState>,
    _caller: AuthContext,
) -> Result<(StatusCode, Json<Checkpoint>), ApiError> {
    chain::chain_pending(state.pool()).await?;
    let key = checkpoint::load_or_create_key(&state.data_dir().keys())?;
    let created = checkpoint::create(state.pool(), &key, state.clock().now()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Every signed checkpoint, oldest first.
#[utoipa::path(get, path = "/api/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, description = "Checkpoints", body = [Checkpoint]),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_checkpoints(
    State(state): State<AppState>,
    _caller: AuthContext,
) -> Result<Json<Vec<Checkpoint>>, ApiError> {
    Ok(Json(checkpoint::list(state.pool()).await?))
}

/// The audit log: query, export, verify, checkpoints, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(
            Permission("administration.audit.verify"),
            routes!(verify_handler),
        ))
        .routes(declare(
            Permission("administration.audit.read"),
            routes!(super::query::list),
        ))
        .routes(declare(
            Permission("administration.audit.export"),
            routes!(super::query::export),
        ))
        .routes(declare(
            Permission("administration.audit.verify"),
            routes!(create_checkpoint),
        ))
        .routes(declare(
            Permission("administration.audit.read"),
            routes!(list_checkpoints),
        ))
}
