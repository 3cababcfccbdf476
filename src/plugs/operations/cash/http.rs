//! `/api/v1/cash-sessions`: open, list, show, cash in/out, close (the handlers; the rules are in
//! `rules.rs`, the SQL in `store.rs`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::rules::{self, MovementKind, SessionStatus, ValidMovement};
use super::store::{self, Closing, Lock, SessionRow};
use super::{MANAGE_ANY, MODULE, NO_SALE};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::db::violated_constraint;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::http::{page, page_limit};
use crate::core::idempotency;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::plugs::operations::api::approvals;
use crate::shared::ids::new_id;
use crate::shared::money::show;

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

pub(super) fn present(row: SessionRow, scale: u32) -> CashSession {
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

async fn fetch_row(conn: &mut PgConnection, id: Uuid, lock: Lock) -> Result<SessionRow, ApiError> {
    store::session(conn, id, lock)
        .await?
        .ok_or_else(|| not_found(id))
}

/// Session `id`, for the API.
pub async fn fetch_session(
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<CashSession, ApiError> {
    Ok(present(fetch_row(conn, id, Lock::None).await?, scale))
}

async fn business(conn: &mut PgConnection) -> Result<Business, ApiError> {
    Business::load(conn).await?.ok_or(ApiError::SetupRequired)
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
    crate::core::devices::check_register(&state, caller.origin.device_id, new.register_id).await?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let business = business(&mut tx).await?;
    let scale = business.currency_scale;
    let mut errors = Vec::new();
    let float = rules::amount("opening_float", &new.opening_float, scale, &mut errors);
    if !places::register_exists(&mut tx, new.register_id).await? {
        errors.push(FieldError::new("register_id", "is not a register"));
    }
    let (Some(float), true) = (float, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let id = new_id();
    store::insert_session(&mut tx, id, new.register_id, float, caller.user_id, now)
        .await
        .map_err(|e| {
            if violated_constraint(&e) == Some("cash_sessions_one_open") {
                ApiError::Conflict {
                    code: "cash.session_already_open",
                    detail: "This register already has an open cash session; close it first."
                        .to_owned(),
                }
            } else {
                e.into()
            }
        })?;
    let session = present(fetch_row(&mut tx, id, Lock::None).await?, scale);
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
    #[param(pattern = "^(open|closed)$")]
    pub status: Option<String>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,7}$")]
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
    let limit = page_limit(query.limit, 50, 200)?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            SessionStatus::parse(s)
                .ok_or_else(|| ApiError::invalid("status", "must be open or closed"))
        })
        .transpose()?;
    let offset = crate::core::http::offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let scale = business(&mut conn).await?.currency_scale;
    let rows = store::sessions(
        &mut conn,
        query.register_id,
        status.map(SessionStatus::as_str),
        offset,
        limit + 1,
    )
    .await?;
    let (rows, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
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
    #[schema(value_type = MovementKind)]
    pub kind: String,
    #[schema(example = "20.00")]
    pub amount: String,
    /// Why (bank deposit, change float top-up...): 1 to 500 characters, not only spaces.
    #[schema(min_length = 1, max_length = 500)]
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

/// 403 `cash.not_your_session`.
/// 409 `cash.no_open_session`: a document for a register without an open session (a sale, a
/// return).
pub fn no_open_session() -> ApiError {
    ApiError::Conflict {
        code: "cash.no_open_session",
        detail:
            "This register has no open cash session; open one first (POST /api/v1/cash-sessions)."
                .to_owned(),
    }
}

pub fn not_your_session() -> ApiError {
    ApiError::Denied {
        code: "cash.not_your_session",
        detail: format!(
            "This cash session was opened by another cashier: use your own, or ask someone who holds `{MANAGE_ANY}`."
        ),
    }
}

/// A session belongs to the cashier who opened it: anyone else needs `operations.cash.manage_any`
/// (a refusal is recorded as a denial).
pub async fn refuse_others(
    state: &AppState,
    caller: &AuthContext,
    opened_by: Uuid,
) -> Result<(), ApiError> {
    if opened_by == caller.user_id {
        return Ok(());
    }
    caller
        .require(state, MANAGE_ANY)
        .await
        .map_err(|_| not_your_session())
}

fn refuse_closed(row: &SessionRow) -> Result<(), ApiError> {
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
        (status = 403, description = "Missing permission (`rbac.forbidden`), or another cashier's session without `operations.cash.manage_any` (`cash.not_your_session`)", body = Problem, content_type = "application/problem+json"),
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
    let ValidMovement {
        kind,
        amount,
        reason,
    } = rules::movement(&new.kind, &new.amount, &new.reason, scale)
        .map_err(ApiError::Validation)?;
    let row = fetch_row(&mut tx, id, Lock::Share).await?;
    refuse_others(&state, &caller, row.opened_by).await?;
    refuse_closed(&row)?;
    let movement_id = new_id();
    store::insert_movement(
        &mut tx,
        movement_id,
        id,
        kind.as_str(),
        amount,
        &reason,
        caller.user_id,
        now,
    )
    .await?;
    let movement = Movement {
        id: movement_id,
        cash_session_id: id,
        kind: kind.as_str().to_owned(),
        amount: show(amount, scale),
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
        (status = 403, description = "Missing permission (`rbac.forbidden`), or another cashier's session without `operations.cash.manage_any` (`cash.not_your_session`)", body = Problem, content_type = "application/problem+json"),
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
    let Some(counted) = rules::amount("counted_cash", &body.counted_cash, scale, &mut errors)
    else {
        return Err(ApiError::Validation(errors));
    };
    // Waits for sales and movements in flight on this session, then blocks new ones.
    let before = fetch_row(&mut tx, id, Lock::Update).await?;
    refuse_others(&state, &caller, before.opened_by).await?;
    refuse_closed(&before)?;
    let expected = store::cash_flows(&state, &mut tx, id).await?.0.expected();
    let reason = rules::variance_reason(
        body.variance_reason.as_deref(),
        expected,
        counted,
        business.variance_reason_threshold,
        scale,
    )
    .map_err(|why| ApiError::invalid("variance_reason", why))?;
    let closing = Closing {
        closed_by: caller.user_id,
        at: now,
        expected,
        counted,
        reason: reason.as_deref(),
    };
    store::close_session(&mut tx, id, &closing).await?;
    let session = present(fetch_row(&mut tx, id, Lock::None).await?, scale);
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

/// A drawer opened without a sale.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNoSale {
    /// Why (change for a customer, a jammed drawer...): 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
    /// A manager's approval (`POST /api/v1/approvals`, action `operations.cash.no_sale`), needed
    /// by a cashier without that permission.
    pub approval_ref: Option<String>,
}

/// Record a drawer opened without a sale (counted in the X report; audited, with the approval).
/// Accepts an `Idempotency-Key` (a retry answers the same record).
#[utoipa::path(post, path = "/api/v1/cash-sessions/{id}/no-sale", tag = "cash", security(("bearer" = [])), request_body = NewNoSale,
    params(("id" = Uuid, Path, description = "Cash session id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same record", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Recorded", body = Movement),
        (status = 403, description = "Missing permission (`rbac.forbidden`), another cashier's session (`cash.not_your_session`), no approval while one is needed (`approval.required`), or an approval that does not fit (`approval.invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such session (`cash.session_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The session is closed (`cash.session_closed`), or its day is closed (`period.closed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn no_sale(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<Movement>), ApiError> {
    let key = idempotency::optional_key(&headers)?;
    let hash = idempotency::request_hash(&body);
    let new: NewNoSale = from_value(body)?;
    let key = idempotency::scoped(
        &format!("{}/{id}", caller.user_id),
        key.as_deref().unwrap_or(&new_id().to_string()),
    );
    let reason = new.reason.trim().to_owned();
    if reason.is_empty() || new.reason.chars().count() > 500 {
        return Err(ApiError::invalid("reason", "must be 1 to 500 characters"));
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let scale = business(&mut tx).await?.currency_scale;
    let movement_id = new_id();
    if let Some(stored) = idempotency::claim(
        &mut tx,
        "cash.no_sale",
        &key,
        &hash,
        movement_id,
        caller.user_id,
        now,
    )
    .await?
    {
        tx.rollback().await?;
        let id = stored.replay_for(&hash)?;
        let mut conn = state.pool().acquire().await?;
        return Ok((
            StatusCode::CREATED,
            Json(store::movement(&mut conn, id, scale).await?),
        ));
    }
    let row = fetch_row(&mut tx, id, Lock::Share).await?;
    // The drawer is the till's: opened from its register's enrolled till only.
    crate::core::devices::check_register(&state, caller.origin.device_id, row.register_id).await?;
    refuse_others(&state, &caller, row.opened_by).await?;
    refuse_closed(&row)?;
    let wanted = approvals::Wanted {
        action: NO_SALE,
        requester: caller.user_id,
        register_id: Some(row.register_id),
        subject_id: None,
        sale_id: None,
        amount: None,
        without_receipt: false,
        request: &key,
    };
    let held = caller.has(NO_SALE);
    let approval =
        approvals::unless_held(&mut tx, held, new.approval_ref.as_deref(), &wanted, now).await?;
    store::insert_movement(
        &mut tx,
        movement_id,
        id,
        "no_sale",
        rust_decimal::Decimal::ZERO,
        &reason,
        caller.user_id,
        now,
    )
    .await?;
    crate::plugs::operations::api::cash::review_later(&mut tx, caller.user_id, now).await?;
    let movement = Movement {
        id: movement_id,
        cash_session_id: id,
        kind: "no_sale".to_owned(),
        amount: show(rust_decimal::Decimal::ZERO, scale),
        reason,
        user_id: caller.user_id,
        created_at: now,
    };
    tx.record(
        Change::new(MODULE, "cash_session", id, "cash_session.no_sale")
            .after(json!({
                "movement_id": movement_id, "reason": movement.reason,
                "approved_by": approval.as_ref().map(|a| a.approver_username.clone()),
            }))
            .reason(
                Some("no_sale".to_owned()),
                approval.as_ref().map(|a| a.approval_ref.clone()),
            ),
    )
    .await?;
    tx.commit().await?;
    state.live().publish(
        "cash",
        "cash_session.no_sale",
        json!({"id": id, "register_id": row.register_id, "user_id": caller.user_id}),
    );
    Ok((StatusCode::CREATED, Json(movement)))
}
