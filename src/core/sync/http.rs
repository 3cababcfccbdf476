//! `GET /api/v1/sync/changes`: the change feed, for enrolled tills.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use utoipa::IntoParams;

use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::conflicts::{self, CONFLICTS};
use super::push::{self, PushAnswer, PushingDevice};
use super::{DEFAULT_LIMIT, MAX_LIMIT, SyncPage};
use crate::core::auth::context::AuthContext;
use crate::core::devices::{self, OFFLINE_USE};
use crate::core::http::ApiJson;
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

/// A push: what the till did offline, in the order it did it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The till pushing (the device of the `X-Device-Token`).
    pub device_id: Uuid,
    /// 1 to 10,000 documents, oldest first. Each has `type` (`sale`, `return`, `cash_movement`,
    /// `cash_session_open`, `cash_session_close`), `id` (the till's UUID for it), `created_at`
    /// (the till's time), `user_id` (who made it), `receipt_number` (numbered documents) and the
    /// fields of its type (docs/api.md, "The offline push").
    #[schema(value_type = Vec<Object>)]
    pub documents: Vec<Value>,
}

/// The most a push body may weigh (10,000 documents of a few lines each).
const PUSH_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Record what an enrolled till did while offline: each document once (a document pushed again
/// answers as the first time), in order, in its register's receipt series; what the server
/// would have refused online is recorded anyway and logged as a conflict.
#[utoipa::path(post, path = "/api/v1/sync/push", tag = "sync", security(("bearer" = [])), request_body = PushRequest,
    responses(
        (status = 200, description = "Every document recorded (now or by an earlier push)", body = PushAnswer),
        (status = 401, description = "Not a session on an enrolled till (`device.required`, `device.invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`), or `device_id` is not the till's own (`device.mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A receipt number out of sequence (`sync.sequence_gap`, naming the missing number), a document id pushed before with other content (`sync.document_conflict`), a closed day (`period.closed`), or what the document's type refuses (`cash.no_open_session`, `cash.session_already_open`, `return.exceeds_returnable`, `return.contention`...); the documents before it were recorded", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad documents (`validation.failed`, naming `documents[i].field`), or a till's total its lines do not give (`sync.total_mismatch`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn push(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(body): ApiJson<PushRequest>,
) -> Result<Json<PushAnswer>, ApiError> {
    let Some(device_id) = caller.origin.device_id else {
        return Err(ApiError::Unauthorized {
            code: "device.required",
            detail: "Only an enrolled till pushes: log in on the till, with its `X-Device-Token`."
                .to_owned(),
        });
    };
    if device_id != body.device_id {
        return Err(ApiError::Denied {
            code: "device.mismatch",
            detail: "`device_id` must be the till's own (the device of the X-Device-Token)."
                .to_owned(),
        });
    }
    let device = {
        let mut conn = state.pool().acquire().await?;
        devices::get(&mut conn, device_id)
            .await?
            .ok_or_else(devices::invalid)?
    };
    let device = PushingDevice {
        id: device.id,
        name: device.name,
        register_id: device.register_id,
    };
    let documents = push::check_documents(&state, &device, body.documents).await?;
    Ok(Json(push::push(&state, &caller, &device, documents).await?))
}

/// The sync routes, each with its access rule.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    let pushing = utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(OFFLINE_USE), routes!(push)))
        .layer(axum::extract::DefaultBodyLimit::max(PUSH_BODY_LIMIT));
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(Permission(OFFLINE_USE), routes!(changes)))
        .routes(declare(Permission(CONFLICTS), routes!(conflicts::list)))
        .routes(declare(Permission(CONFLICTS), routes!(conflicts::resolve)))
        .merge(pushing)
}
