//! `GET /api/v1/sync/changes`: the change feed, for enrolled tills.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{DEFAULT_LIMIT, MAX_LIMIT, SyncPage};
use crate::core::auth::context::AuthContext;
use crate::core::devices::{self, OFFLINE_USE};
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, page_limit};
use crate::core::state::AppState;

/// Where to continue.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ChangesQuery {
    /// The `next_cursor` of the previous answer; absent: start with a snapshot.
    #[param(pattern = "^[a-z0-9_.]{1,700}$")]
    pub cursor: Option<String>,
    /// 1 to 2000 items (default 500).
    #[param(minimum = 1, maximum = 2000)]
    pub limit: Option<i64>,
}

/// The changes since `cursor` of what an enrolled till caches, in position order (see
/// docs/api.md, "The change feed"); without a cursor, a consistent snapshot first.
#[utoipa::path(get, path = "/api/v1/sync/changes", tag = "sync", security(("bearer" = [])), params(ChangesQuery),
    responses(
        (status = 200, description = "A page of upserts and tombstones and the cursor after it", body = SyncPage),
        (status = 401, description = "Not a session opened on an enrolled till, or its credential is missing (`device.required`) or revoked (`device.invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The cursor is too old, or the caller's permissions changed: take a new snapshot (`sync.cursor_expired`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a cursor the feed gave (`sync.cursor_invalid`), bad limit (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn changes(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    Query(query): Query<ChangesQuery>,
) -> Result<Json<SyncPage>, ApiError> {
    let Some(device) = caller.origin.device_id else {
        return Err(ApiError::Unauthorized {
            code: "device.required",
            detail: "The change feed serves enrolled tills: log in on the till, with its `X-Device-Token`.".to_owned(),
        });
    };
    let limit = page_limit(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let (page, confirmed) = super::page(&state, &caller, query.cursor.as_deref(), limit).await?;
    let now = state.clock().now();
    let mut conn = state.pool().acquire().await?;
    super::confirm(&mut conn, device, confirmed, now).await?;
    devices::seen(
        &mut conn,
        device,
        devices::app_version(&headers).as_deref(),
        now,
    )
    .await?;
    Ok(Json(page))
}

/// The sync routes, each with its access rule.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(OFFLINE_USE), routes!(changes)))
}
