//! `/api/v1/cash-sessions`: open, list, show, cash in/out, close.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::report::cash_flows;
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::db::violated_constraint;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::shared::ids::new_id;
use crate::shared::money::{parse_money, show};

const MODULE: &str = "operations.cash";

/// A cash session.
#[derive(Debug, Serialize, ToSchema)]
pub struct CashSession {
    pub id: Uuid,
    pub register_id: Uuid,
    /// `open` or `closed`.
    pub status: String,
    #[schema(value_type = String, example = "150.00")]
    pub opening_float: String,
    pub opened_by: Uuid,
    pub opened_at: DateTime<Utc>,
    pub closed_by: Option<Uuid>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Set at close.
    #[schema(value_type = Option<String>)]
    pub expected_cash: Option<String>,
    #[schema(value_type = Option<String>)]
    pub counted_cash: Option<String>,
    /// counted - expected (negative: cash is missing).
    #[schema(value_type = Option<String>)]
    pub variance: Option<String>,
    pub variance_reason: Option<String>,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    register_id: Uuid,
    status: String,
    opening_float: Decimal,
    opened_by: Uuid,
    opened_at: DateTime<Utc>,
    closed_by: Option<Uuid>,
    closed_at: Option<DateTime<Utc>>,
    expected_cash: Option<Decimal>,
    counted_cash: Option<Decimal>,
    variance: Option<Decimal>,
    variance_reason: Option<String>,
    version: i64,
}

const SELECT: &str = "SELECT id, register_id, status, opening_float, opened_by, opened_at, closed_by, closed_at, \
    expected_cash, counted_cash, variance, variance_reason, version FROM cash_sessions";

fn present(row: Row, scale: u32) -> CashSession {
    CashSession {
        id: row.id,
        register_id: row.register_id,
        status: row.status,
        opening_float: show(row.opening_float, scale),
        opened_by: row.opened_by,
        opened_at: row.opened_at,
        closed_by: row.closed_by,
        closed_at: row.closed_at,
        expected_cash: row.expected_cash.map(|v| show(v, scale)),
        counted_cash: row.counted_cash.map(|v| show(v, scale)),
        variance: row.variance.map(|v| show(v, scale)),
        variance_reason: row.variance_reason,
        version: row.version,
    }
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "cash.session_not_found",
        detail: format!("No cash session with id {id}."),
    }
}

async fn fetch_row(conn: &mut PgConnection, id: Uuid, lock: bool) -> Result<Row, ApiError> {
    let sql = format!(
        "{SELECT} WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Session `id`, for the API.
pub async fn fetch_session(
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<CashSession, ApiError> {
    Ok(present(fetch_row(conn, id, false).await?, scale))
}

async fn business(conn: &mut PgConnection) -> Result<Business, ApiError> {
    Business::load(conn).await?.ok_or(ApiError::SetupRequired)
}

fn amount(field: &str, text: &str, scale: u32, errors: &mut Vec<FieldError>) -> Option<Decimal> {
    parse_money(text, scale)
        .map_err(|why| errors.push(FieldError::new(field, why)))
        .ok()
}

fn event_data(session: &CashSession) -> serde_json::Value {
    json!({
        "id": session.id, "register_id": session.register_id, "status": session.status,
        "expected_cash": session.expected_cash, "counted_cash": session.counted_cash, "variance": session.variance,
    })
}

/// Opening a session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    pub register_id: Uuid,
    /// Cash in the drawer at the start.
    #[schema(example = "150.00")]
    pub opening_float: String,
}

/// Open a cash session on a register (one open session per register; audited).
#[utoipa::path(post, path = "/api/v1/cash-sessions", tag = "cash", security(("bearer" = [])), request_body = NewSession,
    responses(
        (status = 201, description = "Opened", body = CashSession),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The register has an open session (`cash.session_already_open`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn open(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(new): ApiJson<NewSession>,
) -> Result<(StatusCode, Json<CashSession>), ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let business = business(&mut tx).await?;
    let scale = business.currency_scale;
    let mut errors = Vec::new();
    let float = amount("opening_float", &new.opening_float, scale, &mut errors);
    if !places::register_exists(&mut tx, new.register_id).await? {
        errors.push(FieldError::new("register_id", "is not a register"));
    }
    let (Some(float), true) = (float, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let id = new_id();
    sqlx::query(
        "INSERT INTO cash_sessions (id, register_id, opening_float, opened_by, opened_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(new.register_id)
    .bind(float)
    .bind(caller.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        if violated_constraint(&e) == Some("cash_sessions_one_open") {
            ApiError::Conflict {
                code: "cash.session_already_open",
                detail: "This register already has an open cash session; close it first.".to_owned(),
            }
        } else {
            e.into()
        }
    })?;
    let session = present(fetch_row(&mut tx, id, false).await?, scale);
    tx.record(
        Change::new(MODULE, "cash_session", id, "cash_session.open").after(json!({
            "register_id": new.register_id, "opening_float": session.opening_float,
        })),
    )
    .await?;
    tx.commit().await?;
    state
        .live()
        .publish("cash", "cash_session.opened", event_data(&session));
    Ok((StatusCode::CREATED, Json(session)))
}

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SessionQuery {
    pub register_id: Option<Uuid>,
    /// `open` or `closed`.
    pub status: Option<String>,
    /// 1 to 200 (default 50).
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A page of sessions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    pub items: Vec<CashSession>,
    pub next_cursor: Option<String>,
}

/// Cash sessions, newest first.
#[utoipa::path(get, path = "/api/v1/cash-sessions", tag = "cash", security(("bearer" = [])), params(SessionQuery),
    responses(
        (status = 200, description = "A page of sessions", body = SessionPage),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<SessionQuery>,
) -> Result<Json<SessionPage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 200"));
    }
    if let Some(status) = &query.status
        && status != "open"
        && status != "closed"
    {
        return Err(ApiError::invalid("status", "must be open or closed"));
    }
    let offset = crate::core::http::offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let scale = business(&mut conn).await?.currency_scale;
    let sql = format!(
        "{SELECT} WHERE ($1::uuid IS NULL OR register_id = $1) AND ($2::text IS NULL OR status = $2) \
         ORDER BY opened_at DESC, id DESC OFFSET $3 LIMIT $4"
    );
    let mut rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(query.register_id)
        .bind(&query.status)
        .bind(offset)
        .bind(limit + 1)
        .fetch_all(&mut *conn)
        .await?;
    let next_cursor = (rows.len() as i64 > limit).then(|| {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        (offset + limit).to_string()
    });
    Ok(Json(SessionPage {
        items: rows.into_iter().map(|r| present(r, scale)).collect(),
        next_cursor,
    }))
}

/// One cash session.
#[utoipa::path(get, path = "/api/v1/cash-sessions/{id}", tag = "cash", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Cash session id")),
    responses(
        (status = 200, description = "The session", body = CashSession),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session (`cash.session_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<CashSession>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let scale = business(&mut conn).await?.currency_scale;
    Ok(Json(fetch_session(&mut conn, id, scale).await?))
}

/// Cash put into or taken out of the drawer.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMovement {
    /// `in` or `out`.
    pub kind: String,
    #[schema(example = "20.00")]
    pub amount: String,
    /// Why (bank deposit, change float top-up...).
    pub reason: String,
}

/// A recorded cash movement.
#[derive(Debug, Serialize, ToSchema)]
pub struct Movement {
    pub id: Uuid,
    pub cash_session_id: Uuid,
    pub kind: String,
    #[schema(value_type = String)]
    pub amount: String,
    pub reason: String,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
}

fn refuse_closed(row: &Row) -> Result<(), ApiError> {
    if row.status == "open" {
        return Ok(());
    }
    Err(ApiError::Conflict {
        code: "cash.session_closed",
        detail: "This cash session is closed.".to_owned(),
    })
}

/// Record cash put into or taken out of an open session's drawer (audited).
#[utoipa::path(post, path = "/api/v1/cash-sessions/{id}/movements", tag = "cash", security(("bearer" = [])), request_body = NewMovement,
    params(("id" = Uuid, Path, description = "Cash session id")),
    responses(
        (status = 201, description = "Recorded", body = Movement),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session (`cash.session_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session is closed (`cash.session_closed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn movement(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(new): ApiJson<NewMovement>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let scale = business(&mut tx).await?.currency_scale;
    let mut errors = Vec::new();
    if new.kind != "in" && new.kind != "out" {
        errors.push(FieldError::new("kind", "must be in or out"));
    }
    let value = amount("amount", &new.amount, scale, &mut errors);
    if value.is_some_and(|v| v.is_zero()) {
        errors.push(FieldError::new("amount", "must be more than zero"));
    }
    let reason = new.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        errors.push(FieldError::new("reason", "must be 1 to 500 characters"));
    }
    let (Some(value), true) = (value, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    // Share lock: movements and sales may go on together; a close waits for them.
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE id = $1 FOR SHARE"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| not_found(id))?;
    refuse_closed(&row)?;
    let movement_id = new_id();
    sqlx::query(
        "INSERT INTO cash_movements (id, cash_session_id, kind, amount, reason, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(movement_id)
    .bind(id)
    .bind(&new.kind)
    .bind(value)
    .bind(&reason)
    .bind(caller.user_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let movement = Movement {
        id: movement_id,
        cash_session_id: id,
        kind: new.kind,
        amount: show(value, scale),
        reason,
        user_id: caller.user_id,
        created_at: now,
    };
    tx.record(
        Change::new(MODULE, "cash_session", id, "cash_session.movement").after(json!({
            "movement_id": movement_id, "kind": movement.kind, "amount": movement.amount, "reason": movement.reason,
        })),
    )
    .await?;
    tx.commit().await?;
    state.live().publish(
        "cash",
        "cash_session.movement",
        json!({"id": id, "register_id": row.register_id, "kind": movement.kind, "amount": movement.amount}),
    );
    Ok((StatusCode::CREATED, Json(movement)))
}

/// Closing a session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseSession {
    /// The cash counted in the drawer.
    #[schema(example = "412.30")]
    pub counted_cash: String,
    /// Required when the variance is larger than the setting `cash.variance_reason_threshold`.
    pub variance_reason: Option<String>,
}

/// Close a session: expected vs counted cash, and the variance (audited).
#[utoipa::path(post, path = "/api/v1/cash-sessions/{id}/close", tag = "cash", security(("bearer" = [])), request_body = CloseSession,
    params(("id" = Uuid, Path, description = "Cash session id")),
    responses(
        (status = 200, description = "Closed", body = CashSession),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session (`cash.session_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already closed (`cash.session_closed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a variance without a reason (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn close(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<CloseSession>,
) -> Result<Json<CashSession>, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let business = business(&mut tx).await?;
    let scale = business.currency_scale;
    let mut errors = Vec::new();
    let counted = amount("counted_cash", &body.counted_cash, scale, &mut errors);
    let Some(counted) = counted else {
        return Err(ApiError::Validation(errors));
    };
    // Waits for sales and movements in flight on this session, then blocks new ones.
    let before = fetch_row(&mut tx, id, true).await?;
    refuse_closed(&before)?;
    let expected = cash_flows(&state, &mut tx, id).await?.0.expected();
    let variance = counted - expected;
    let reason = body
        .variance_reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
        return Err(ApiError::invalid(
            "variance_reason",
            "must be at most 500 characters",
        ));
    }
    if variance.abs() > business.variance_reason_threshold && reason.is_none() {
        return Err(ApiError::invalid(
            "variance_reason",
            format!(
                "is required: the counted cash differs from the expected {} by {} (more than {})",
                show(expected, scale),
                show(variance, scale),
                show(business.variance_reason_threshold, scale),
            ),
        ));
    }
    sqlx::query(
        "UPDATE cash_sessions SET status = 'closed', closed_by = $2, closed_at = $3, expected_cash = $4, \
         counted_cash = $5, variance = $6, variance_reason = $7, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(caller.user_id)
    .bind(now)
    .bind(expected)
    .bind(counted)
    .bind(variance)
    .bind(&reason)
    .execute(&mut *tx)
    .await?;
    let session = present(fetch_row(&mut tx, id, false).await?, scale);
    tx.record(
        Change::new(MODULE, "cash_session", id, "cash_session.close")
            .before(json!({"status": before.status}))
            .after(json!({
                "status": "closed", "expected_cash": session.expected_cash, "counted_cash": session.counted_cash,
                "variance": session.variance, "variance_reason": session.variance_reason,
            })),
    )
    .await?;
    tx.commit().await?;
    state
        .live()
        .publish("cash", "cash_session.closed", event_data(&session));
    Ok(Json(session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_bounded() {
        let mut errors = Vec::new();
        assert!(amount("a", "10000000001", 2, &mut errors).is_none());
        assert!(amount("a", "1.234", 2, &mut errors).is_none());
        assert_eq!(errors.len(), 2);
    }
}
