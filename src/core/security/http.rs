//! `GET /api/v1/security-events`: newest first, filtered, cursor-paginated.

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::auth::context::AuthContext;
use crate::core::http::ApiError;
use crate::core::http::problem::Problem;
use crate::core::http::{page, page_limit};
use crate::core::state::AppState;

/// IP addresses are shown only with this permission (field-level).
const IP_READ: &str = "administration.sessions.read";

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct EventQuery {
    /// e.g. `login_failed`, `permission_denied`.
    pub kind: Option<String>,
    pub user_id: Option<Uuid>,
    /// Inclusive, RFC 3339.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive, RFC 3339.
    pub to: Option<DateTime<Utc>>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

/// One security event.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SecurityEventItem {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub username: Option<String>,
    pub workstation_id: Option<String>,
    /// Present only with `administration.sessions.read`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityEventPage {
    pub items: Vec<SecurityEventItem>,
    pub next_cursor: Option<String>,
}

/// A cursor is the last event's `<occurred_at in microseconds>_<id>`.
fn decode_cursor(cursor: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (time, id) = cursor.split_once('_')?;
    Some((
        DateTime::from_timestamp_micros(time.parse().ok()?)?,
        id.parse().ok()?,
    ))
}

fn encode_cursor(item: &SecurityEventItem) -> String {
    format!("{}_{}", item.occurred_at.timestamp_micros(), item.id)
}

/// Security events, newest first.
#[utoipa::path(get, path = "/api/v1/security-events", tag = "security", security(("bearer" = [])), params(EventQuery),
    responses(
        (status = 200, description = "A page of events", body = SecurityEventPage),
        (status = 400, description = "Unparseable query (`request.bad`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(query): Query<EventQuery>,
) -> Result<Json<SecurityEventPage>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let before = match &query.cursor {
        Some(cursor) => Some(
            decode_cursor(cursor)
                .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor from this list"))?,
        ),
        None => None,
    };
    let rows: Vec<SecurityEventItem> = sqlx::query_as(
        "SELECT id, occurred_at, kind, user_id, username, workstation_id, host(ip) AS ip, request_id, details \
         FROM security_events \
         WHERE ($1::text IS NULL OR kind = $1) AND ($2::uuid IS NULL OR user_id = $2) \
           AND ($3::timestamptz IS NULL OR occurred_at >= $3) AND ($4::timestamptz IS NULL OR occurred_at < $4) \
           AND ($5::timestamptz IS NULL OR (occurred_at, id) < ($5, $6)) \
         ORDER BY occurred_at DESC, id DESC LIMIT $7",
    )
    .bind(&query.kind)
    .bind(query.user_id)
    .bind(query.from)
    .bind(query.to)
    .bind(before.map(|b| b.0))
    .bind(before.map(|b| b.1))
    .bind(limit + 1)
    .fetch_all(state.pool())
    .await?;
    let (mut items, next_cursor) = page(rows, limit, encode_cursor);
    if !caller.has(IP_READ) {
        for item in &mut items {
            item.ip = None;
        }
    }
    Ok(Json(SecurityEventPage { items, next_cursor }))
}

/// Security events, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new().routes(declare(
        Permission("administration.security_events.read"),
        routes!(list),
    ))
}
