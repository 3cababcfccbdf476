//! `/api/v1/stock/transfers`: goods moved between locations, and what is in transit.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson, Page, offset_cursor, page, page_limit};
use crate::core::idempotency::{self, CreateKey};
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::plugs::management::api::catalog;
use crate::plugs::management::stock::MODULE;
use crate::plugs::management::stock::store::transfers::{self, InTransit, Transfer, TransferLine};
use crate::plugs::management::stock::store::{self, NewMovement};
use crate::plugs::management::stock::transfer_rules::{
    self, Action, LineInput, ReceivedInput, Status,
};
use crate::shared::ids::new_id;

/// A new transfer (a draft until it is sent).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    pub from_location_id: Uuid,
    pub to_location_id: Uuid,
    /// 1 to 500 lines, one per product.
    pub lines: Vec<NewTransferLine>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransferLine {
    pub product_id: Uuid,
    /// Positive, three decimals at most.
    #[schema(example = "6")]
    pub quantity: String,
}

/// The version the client saw (a stale one is `409 conflict.version_mismatch`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferVersion {
    pub version: i64,
}

/// What arrived: the lines named (the others arrived in full).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub version: i64,
    #[serde(default)]
    pub lines: Vec<ReceivedLine>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceivedLine {
    pub line_no: i32,
    #[schema(example = "5")]
    pub received_quantity: String,
    /// Needed when what arrived differs from what was sent: `damaged`, `lost` or `miscounted`.
    pub difference_reason: Option<String>,
}

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TransferQuery {
    #[param(pattern = "^(draft|sent|received|cancelled)$")]
    pub status: Option<String>,
    /// Transfers from or to this location.
    pub location_id: Option<Uuid>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// Filters and paging of the goods in transit.
#[derive(Debug, Deserialize, IntoParams)]
pub struct InTransitQuery {
    pub product_id: Option<Uuid>,
    /// The destination.
    pub location_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// Create a transfer (a draft: nothing moves until it is sent). Takes an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/stock/transfers", tag = "stock", security(("bearer" = [])), request_body = NewTransfer,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same transfer", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created as a draft", body = Transfer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), a product that does not track stock (`stock.not_tracked`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "stock_transfers", &body)?;
    let new: NewTransfer = from_value(body)?;
    let mut conn = state.pool().acquire().await?;
    if let Some(id) = key.earlier(&mut conn).await? {
        return answer(&mut conn, id, StatusCode::CREATED, true).await;
    }
    let (branch_id, lines, note) = validated(&mut conn, &new).await?;
    drop(conn);
    let now = state.clock().now();
    let id = new_id();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(earlier) = key.claim(&mut tx, id, caller.user_id, now).await? {
        tx.rollback().await?;
        let mut conn = state.pool().acquire().await?;
        return answer(&mut conn, earlier, StatusCode::CREATED, true).await;
    }
    let number = transfers::next_number(&mut tx, branch_id).await?;
    let transfer = Transfer {
        id,
        branch_id,
        number,
        from_location_id: new.from_location_id,
        to_location_id: new.to_location_id,
        status: Status::Draft.as_str().to_owned(),
        note,
        created_by: caller.user_id,
        created_at: now,
        sent_by: None,
        sent_at: None,
        received_by: None,
        received_at: None,
        cancelled_by: None,
        cancelled_at: None,
        version: 1,
        lines: lines
            .iter()
            .zip(1..)
            .map(|((product_id, quantity), line_no)| TransferLine {
                line_no,
                product_id: *product_id,
                quantity: *quantity,
                received_quantity: None,
                difference_reason: None,
            })
            .collect(),
    };
    transfers::insert(&mut tx, &transfer).await?;
    tx.record(
        Change::new(MODULE, "stock_transfer", id, "stock_transfer.create").after(json!({
            "number": number, "branch_id": branch_id, "from_location_id": transfer.from_location_id,
            "to_location_id": transfer.to_location_id, "note": transfer.note,
            "lines": transfer.lines.iter().map(|l| json!({"line_no": l.line_no, "product_id": l.product_id, "quantity": l.quantity.to_string()})).collect::<Vec<_>>(),
        })),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(transfer)).into_response())
}

/// A new transfer checked against the rules and the database: the source's branch, the lines
/// and the note.
async fn validated(
    conn: &mut sqlx::PgConnection,
    new: &NewTransfer,
) -> Result<(Uuid, Vec<(Uuid, rust_decimal::Decimal)>, Option<String>), ApiError> {
    let inputs: Vec<LineInput<'_>> = new
        .lines
        .iter()
        .map(|l| LineInput {
            product_id: l.product_id,
            quantity: &l.quantity,
        })
        .collect();
    let (lines, note) = transfer_rules::check_new(
        new.from_location_id,
        new.to_location_id,
        &inputs,
        new.note.as_deref(),
    )
    .map_err(ApiError::Validation)?;
    let Some(branch_id) = places::branch_of_location(conn, new.from_location_id).await? else {
        return Err(ApiError::invalid("from_location_id", "is not a location"));
    };
    if !places::location_exists(conn, new.to_location_id).await? {
        return Err(ApiError::invalid("to_location_id", "is not a location"));
    }
    for (i, (product_id, _)) in lines.iter().enumerate() {
        match catalog::tracks_stock(conn, *product_id).await? {
            None => {
                return Err(ApiError::invalid(
                    format!("lines[{i}].product_id"),
                    "is not a product",
                ));
            }
            Some(false) => {
                return Err(ApiError::Unprocessable {
                    code: "stock.not_tracked",
                    detail: format!(
                        "The product of line {} does not track stock; set `track_stock` on it first.",
                        i + 1
                    ),
                });
            }
            Some(true) => {}
        }
    }
    Ok((branch_id, lines, note))
}

async fn answer(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    status: StatusCode,
    replayed: bool,
) -> Result<Response, ApiError> {
    let transfer = transfers::load(conn, id, false)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("transfer {id} vanished")))?;
    let mut response = (status, Json(transfer)).into_response();
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    Ok(response)
}

/// A page of transfers, newest first.
#[utoipa::path(get, path = "/api/v1/stock/transfers", tag = "stock", security(("bearer" = [])), params(TransferQuery),
    responses(
        (status = 200, description = "A page of transfers", body = Page<Transfer>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<TransferQuery>,
) -> Result<Json<Page<Transfer>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    if let Some(status) = &query.status
        && Status::parse(status).is_none()
    {
        return Err(ApiError::invalid(
            "status",
            "must be draft, sent, received or cancelled",
        ));
    }
    let mut conn = state.pool().acquire().await?;
    let rows = transfers::list(
        &mut conn,
        query.status.as_deref(),
        query.location_id,
        offset,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// One transfer with its lines.
#[utoipa::path(get, path = "/api/v1/stock/transfers/{id}", tag = "stock", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The transfer", body = Transfer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such transfer (`stock.transfer_not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Transfer>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    transfers::load(&mut conn, id, false)
        .await?
        .map(Json)
        .ok_or_else(no_such_transfer)
}

/// Send a draft: its goods leave the source location (movements `transfer_out`) and are in
/// transit until received.
#[utoipa::path(post, path = "/api/v1/stock/transfers/{id}/send", tag = "stock", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = TransferVersion,
    responses(
        (status = 200, description = "Sent", body = Transfer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such transfer (`stock.transfer_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft (`transfer.wrong_state`) or a stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn send(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<TransferVersion>,
) -> Result<Response, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let transfer = locked(&mut tx, id, body.version, Action::Send).await?;
    let mut moved = Vec::new();
    // In product order, as sales and returns lock levels: no deadlock between them.
    let mut lines: Vec<&TransferLine> = transfer.lines.iter().collect();
    lines.sort_by_key(|l| l.product_id);
    for line in lines {
        let after = move_stock(
            &mut tx,
            &transfer,
            line,
            transfer.from_location_id,
            -line.quantity,
            "transfer_out",
            caller.user_id,
            now,
        )
        .await?;
        moved.push(json!({"line_no": line.line_no, "product_id": line.product_id, "quantity": line.quantity.to_string(), "source_after": after.to_string()}));
    }
    transfers::set_status(&mut tx, id, Status::Sent.as_str(), caller.user_id, now).await?;
    tx.record(
        Change::new(MODULE, "stock_transfer", id, "stock_transfer.send")
            .before(json!({"status": transfer.status, "version": transfer.version}))
            .after(json!({"status": "sent", "lines": moved})),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    answer(&mut conn, id, StatusCode::OK, false).await
}

/// Receive a sent transfer: what arrived goes into the destination (movements `transfer_in`);
/// a line that arrived short or over says why.
#[utoipa::path(post, path = "/api/v1/stock/transfers/{id}/receive", tag = "stock", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = Receipt,
    responses(
        (status = 200, description = "Received", body = Transfer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such transfer (`stock.transfer_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not sent (`transfer.wrong_state`) or a stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, or a difference without its reason (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<Receipt>,
) -> Result<Response, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let transfer = locked(&mut tx, id, body.version, Action::Receive).await?;
    let sent: Vec<(i32, rust_decimal::Decimal)> = transfer
        .lines
        .iter()
        .map(|l| (l.line_no, l.quantity))
        .collect();
    let inputs: Vec<ReceivedInput<'_>> = body
        .lines
        .iter()
        .map(|l| ReceivedInput {
            line_no: l.line_no,
            received_quantity: &l.received_quantity,
            difference_reason: l.difference_reason.as_deref(),
        })
        .collect();
    let arrived = transfer_rules::check_received(&sent, &inputs).map_err(ApiError::Validation)?;
    let mut recorded = Vec::new();
    let mut arrived = arrived;
    arrived.sort_by_key(|got| {
        transfer
            .lines
            .iter()
            .find(|l| l.line_no == got.line_no)
            .map(|l| l.product_id)
    });
    for got in &arrived {
        let Some(line) = transfer.lines.iter().find(|l| l.line_no == got.line_no) else {
            continue;
        };
        if !got.quantity.is_zero() {
            move_stock(
                &mut tx,
                &transfer,
                line,
                transfer.to_location_id,
                got.quantity,
                "transfer_in",
                caller.user_id,
                now,
            )
            .await?;
        }
        transfers::set_received(
            &mut tx,
            id,
            got.line_no,
            got.quantity,
            got.difference_reason.as_deref(),
        )
        .await?;
        recorded.push(json!({"line_no": got.line_no, "sent": line.quantity.to_string(), "received": got.quantity.to_string(), "difference_reason": got.difference_reason}));
    }
    transfers::set_status(&mut tx, id, Status::Received.as_str(), caller.user_id, now).await?;
    tx.record(
        Change::new(MODULE, "stock_transfer", id, "stock_transfer.receive")
            .before(json!({"status": transfer.status, "version": transfer.version}))
            .after(json!({"status": "received", "lines": recorded})),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    answer(&mut conn, id, StatusCode::OK, false).await
}

/// Cancel a draft (nothing had moved).
#[utoipa::path(post, path = "/api/v1/stock/transfers/{id}/cancel", tag = "stock", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = TransferVersion,
    responses(
        (status = 200, description = "Cancelled", body = Transfer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such transfer (`stock.transfer_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft (`transfer.wrong_state`) or a stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<TransferVersion>,
) -> Result<Response, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let transfer = locked(&mut tx, id, body.version, Action::Cancel).await?;
    transfers::set_status(&mut tx, id, Status::Cancelled.as_str(), caller.user_id, now).await?;
    tx.record(
        Change::new(MODULE, "stock_transfer", id, "stock_transfer.cancel")
            .before(json!({"status": transfer.status, "version": transfer.version}))
            .after(json!({"status": "cancelled"})),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    answer(&mut conn, id, StatusCode::OK, false).await
}

fn no_such_transfer() -> ApiError {
    ApiError::NotFound {
        code: "stock.transfer_not_found",
        detail: "There is no such transfer.".to_owned(),
    }
}

/// Transfer `id`, locked, at `version`, in a state `action` may be done from.
async fn locked(
    tx: &mut AuditedTx,
    id: Uuid,
    version: i64,
    action: Action,
) -> Result<Transfer, ApiError> {
    let transfer = transfers::load(tx, id, true)
        .await?
        .ok_or_else(no_such_transfer)?;
    ApiError::check_version("transfer", transfer.version, version)?;
    let status = Status::parse(&transfer.status).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!("transfer {id} is {}", transfer.status))
    })?;
    action.from(status).map_err(|detail| ApiError::Conflict {
        code: "transfer.wrong_state",
        detail,
    })?;
    Ok(transfer)
}

/// Adds `delta` of the line's product at `location` with its movement; returns the level after.
#[allow(clippy::too_many_arguments)]
async fn move_stock(
    tx: &mut AuditedTx,
    transfer: &Transfer,
    line: &TransferLine,
    location: Uuid,
    delta: rust_decimal::Decimal,
    reason: &str,
    user_id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<rust_decimal::Decimal, ApiError> {
    store::lock_level(tx, line.product_id, location).await?;
    let after = store::add_to_level(tx, line.product_id, location, delta).await?;
    let note = format!("transfer {} line {}", transfer.number, line.line_no);
    store::insert_movement(
        tx,
        &NewMovement {
            id: new_id(),
            product_id: line.product_id,
            location_id: location,
            delta,
            quantity_after: after,
            reason_code: reason,
            note: Some(&note),
            document_id: Some(transfer.id),
            user_id,
            at,
        },
    )
    .await?;
    Ok(after)
}

/// Goods in transit: per product and destination, what sent transfers carry.
#[utoipa::path(get, path = "/api/v1/stock/in-transit", tag = "stock", security(("bearer" = [])), params(InTransitQuery),
    responses(
        (status = 200, description = "A page of quantities in transit", body = Page<InTransit>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn in_transit(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<InTransitQuery>,
) -> Result<Json<Page<InTransit>>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let rows = transfers::in_transit(
        &mut conn,
        query.product_id,
        query.location_id,
        offset,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}
