//! `GET /api/v1/flags`, `POST /api/v1/incidents`, `GET /api/v1/incidents`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::MODULE;
use super::store::{self, Flag, FlagFilter, Incident};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, page, page_limit, time_cursor, time_cursor_of};
use crate::core::idempotency::{self, CreateKey};
use crate::core::state::AppState;
use crate::shared::ids::new_id;

/// The rules' names.
const RULES: &[&str] = &[
    "corrections_count",
    "corrections_share",
    "discount",
    "outside_hours",
    "void_after_exact_cash",
];

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct FlagQuery {
    #[param(
        pattern = "^(corrections_count|corrections_share|discount|outside_hours|void_after_exact_cash)$"
    )]
    pub rule: Option<String>,
    /// The cashier.
    pub user_id: Option<Uuid>,
    /// Business dates from (YYYY-MM-DD).
    pub from: Option<NaiveDate>,
    /// Business dates to, inclusive.
    pub to: Option<NaiveDate>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

/// Suspicious patterns found (each is also a security event), newest first, with the documents
/// involved.
#[utoipa::path(get, path = "/api/v1/flags", tag = "incidents", security(("bearer" = [])), params(FlagQuery),
    responses(
        (status = 200, description = "A page of flags", body = Page<Flag>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn flags(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<FlagQuery>,
) -> Result<Json<Page<Flag>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let after = time_cursor(query.cursor.as_deref())?;
    if let Some(rule) = &query.rule
        && !RULES.contains(&rule.as_str())
    {
        return Err(ApiError::invalid(
            "rule",
            format!("must be one of {}", RULES.join(", ")),
        ));
    }
    let filter = FlagFilter {
        rule: query.rule,
        user_id: query.user_id,
        from: query.from,
        to: query.to,
    };
    let mut conn = state.pool().acquire().await?;
    let rows = store::flags(&mut conn, &filter, after, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |f| time_cursor_of(f.created_at, f.id));
    Ok(Json(Page { items, next_cursor }))
}

/// An incident note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    /// 1 to 200 characters.
    pub title: String,
    /// 1 to 20,000 characters.
    pub body: String,
    /// The flags it is about.
    pub flag_ids: Option<Vec<Uuid>>,
    /// The documents it is about (sales, returns, voids, movements).
    pub document_ids: Option<Vec<Uuid>>,
    /// An earlier note this one amends (notes are never edited).
    pub amends: Option<Uuid>,
}

/// Write an incident note (audited, append-only: a later note may amend an earlier one).
/// Accepts an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/incidents", tag = "incidents", security(("bearer" = [])), request_body = NewIncident,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same note", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Recorded", body = Incident),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`: also unknown flags or an unknown note to amend), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_incident(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "incidents", &body)?;
    let new: NewIncident = from_value(body)?;
    let mut conn = state.pool().acquire().await?;
    if let Some(id) = key.earlier(&mut conn).await? {
        return replay(&mut conn, id).await;
    }
    let mut errors = Vec::new();
    if new.title.trim().is_empty() || new.title.chars().count() > 200 {
        errors.push(FieldError::new("title", "must be 1 to 200 characters"));
    }
    if new.body.is_empty() || new.body.chars().count() > 20_000 {
        errors.push(FieldError::new("body", "must be 1 to 20,000 characters"));
    }
    let flag_ids = new.flag_ids.unwrap_or_default();
    let document_ids = new.document_ids.unwrap_or_default();
    if flag_ids.len() > 500 || document_ids.len() > 500 {
        errors.push(FieldError::new(
            "flag_ids",
            "at most 500 flags and 500 documents",
        ));
    }
    let known = store::count_flags(&mut conn, &flag_ids).await?;
    if usize::try_from(known).unwrap_or(0)
        != flag_ids
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    {
        errors.push(FieldError::new(
            "flag_ids",
            "names a flag that does not exist",
        ));
    }
    if let Some(earlier) = new.amends
        && store::incident(&mut conn, earlier).await?.is_none()
    {
        errors.push(FieldError::new("amends", "is not an incident note"));
    }
    drop(conn);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let now = state.clock().now();
    let incident = Incident {
        id: new_id(),
        title: new.title.trim().to_owned(),
        body: new.body,
        flag_ids,
        document_ids,
        amends: new.amends,
        created_by: caller.user_id,
        created_at: now,
    };
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(earlier) = key.claim(&mut tx, incident.id, caller.user_id, now).await? {
        tx.rollback().await?;
        let mut conn = state.pool().acquire().await?;
        return replay(&mut conn, earlier).await;
    }
    store::insert_incident(&mut tx, &incident).await?;
    tx.record(
        Change::new(MODULE, "incident", incident.id, "incident.create").after(json!({
            "title": incident.title, "body": incident.body, "flag_ids": incident.flag_ids,
            "document_ids": incident.document_ids, "amends": incident.amends,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(incident)).into_response())
}

async fn replay(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<Response, ApiError> {
    let incident = store::incident(conn, id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("incident {id} vanished")))?;
    let mut response = (StatusCode::CREATED, Json(incident)).into_response();
    idempotency::mark_replayed(&mut response);
    Ok(response)
}

/// Paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct IncidentQuery {
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

/// Incident notes, newest first.
#[utoipa::path(get, path = "/api/v1/incidents", tag = "incidents", security(("bearer" = [])), params(IncidentQuery),
    responses(
        (status = 200, description = "A page of incident notes", body = Page<Incident>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn incidents(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<IncidentQuery>,
) -> Result<Json<Page<Incident>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let after: Option<(DateTime<Utc>, Uuid)> = time_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let rows = store::incidents(&mut conn, after, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |i| time_cursor_of(i.created_at, i.id));
    Ok(Json(Page { items, next_cursor }))
}
