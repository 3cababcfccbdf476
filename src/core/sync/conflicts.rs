//! The conflict log: what pushed documents did that the server would have refused online (see
//! [`super::push`]). Managers list it and resolve each entry with a note; cashiers never see it.

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, page, page_limit, time_cursor, time_cursor_of};
use crate::core::state::AppState;

/// Seeing and resolving the conflict log.
pub const CONFLICTS: &str = "administration.devices.conflicts";

/// The WebSocket topic that announces new entries.
pub const TOPICS: &[crate::core::live::Topic] = &[crate::core::live::Topic {
    name: "sync",
    permission: CONFLICTS,
    description: "sync.conflicts",
}];

/// A conflict log entry.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Conflict {
    pub id: Uuid,
    /// The till that pushed the document.
    pub device_id: Uuid,
    /// `sale`, `return`, `cash_movement`...
    pub document_type: String,
    pub document_id: Uuid,
    /// `price_changed`, `product_archived`, `stock_negative`, `tax_rate_changed`,
    /// `discount_unapproved`, `approval_missing`, `user_not_allowed`, `customer_unknown`,
    /// `session_closed`, `variance_unexplained`.
    pub kind: String,
    /// What the till did and what the server knew (by kind: line, product, prices, quantities).
    #[schema(value_type = Object)]
    pub detail: Value,
    pub created_at: DateTime<Utc>,
    /// `open` or `resolved`.
    pub status: String,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<Uuid>,
    pub resolution_note: Option<String>,
}

const COLUMNS: &str = "id, device_id, document_type, document_id, kind, detail, created_at, \
     CASE WHEN resolved_at IS NULL THEN 'open' ELSE 'resolved' END AS status, resolved_at, resolved_by, resolution_note";

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ConflictQuery {
    /// `open` or `resolved` (default: both).
    #[param(pattern = "^(open|resolved)$")]
    pub status: Option<String>,
    pub device_id: Option<Uuid>,
    /// The entries of one document.
    pub document_id: Option<Uuid>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

/// A page of the conflict log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConflictPage {
    pub items: Vec<Conflict>,
    pub next_cursor: Option<String>,
}

/// The conflict log, newest first.
#[utoipa::path(get, path = "/api/v1/sync/conflicts", tag = "sync", security(("bearer" = [])), params(ConflictQuery),
    responses(
        (status = 200, description = "A page of entries", body = ConflictPage),
        (status = 403, description = "Missing permission (`rbac.forbidden`): cashiers do not see the log", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<ConflictQuery>,
) -> Result<Json<ConflictPage>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let after = time_cursor(query.cursor.as_deref())?;
    let resolved = match query.status.as_deref() {
        None => None,
        Some("open") => Some(false),
        Some("resolved") => Some(true),
        Some(_) => return Err(ApiError::invalid("status", "must be open or resolved")),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM sync_conflicts \
         WHERE ($1::bool IS NULL OR (resolved_at IS NOT NULL) = $1) \
           AND ($2::uuid IS NULL OR device_id = $2) AND ($3::uuid IS NULL OR document_id = $3) \
           AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) \
         ORDER BY created_at DESC, id DESC LIMIT $6"
    );
    let mut conn = state.pool().acquire().await?;
    let rows: Vec<Conflict> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(resolved)
        .bind(query.device_id)
        .bind(query.document_id)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit + 1)
        .fetch_all(&mut *conn)
        .await?;
    let (items, next_cursor) = page(rows, limit, |c| time_cursor_of(c.created_at, c.id));
    Ok(Json(ConflictPage { items, next_cursor }))
}

/// Resolving an entry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// What was done about it (1 to 1,000 characters, not only spaces).
    #[schema(min_length = 1, max_length = 1000)]
    pub note: String,
}

/// Resolve a conflict log entry with a note (once; audited).
#[utoipa::path(post, path = "/api/v1/sync/conflicts/{id}/resolve", tag = "sync", security(("bearer" = [])), request_body = Resolve,
    params(("id" = Uuid, Path, description = "Conflict id")),
    responses(
        (status = 200, description = "Resolved", body = Conflict),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such entry (`sync.conflict_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Resolved already (`sync.conflict_resolved`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No note (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resolve(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<Resolve>,
) -> Result<Json<Conflict>, ApiError> {
    let note = body.note.trim();
    if note.is_empty() || note.chars().count() > 1000 {
        return Err(ApiError::invalid(
            "note",
            "must say what was done: 1 to 1,000 characters",
        ));
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let now = tx.at();
    let found: Option<(Option<DateTime<Utc>>, String, Uuid)> = sqlx::query_as(
        "SELECT resolved_at, kind, document_id FROM sync_conflicts WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((resolved_at, kind, document)) = found else {
        return Err(ApiError::NotFound {
            code: "sync.conflict_not_found",
            detail: format!("No conflict log entry with id {id}."),
        });
    };
    if resolved_at.is_some() {
        return Err(ApiError::Conflict {
            code: "sync.conflict_resolved",
            detail: "This entry is resolved already; its note stands.".to_owned(),
        });
    }
    let sql = format!(
        "UPDATE sync_conflicts SET resolved_at = $2, resolved_by = $3, resolution_note = $4 WHERE id = $1 RETURNING {COLUMNS}"
    );
    let conflict: Conflict = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(now)
        .bind(caller.user_id)
        .bind(note)
        .fetch_one(&mut *tx)
        .await?;
    tx.record(
        Change::new("core.sync", "sync_conflict", id, "sync_conflict.resolve")
            .before(json!({"status": "open"}))
            .after(
                json!({"status": "resolved", "kind": kind, "document_id": document, "note": note}),
            ),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(conflict))
}
