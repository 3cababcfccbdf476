//! `/api/v1/purchase-orders`: orders to suppliers, their goods receipts, and the order as a PDF.

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, offset_cursor, page, page_limit};
use crate::core::idempotency::{self, CreateKey};
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::plugs::management::api::{catalog, stock};
use crate::plugs::management::purchasing::store::{self, Order, OrderLine, ReceiptLine};
use crate::plugs::management::purchasing::{MODULE, rules};
use crate::shared::ids::new_id;
use crate::shared::money::{Quantity, parse_amount};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub supplier_id: Uuid,
    /// Where the goods will be received.
    pub location_id: Uuid,
    /// 1 to 500 lines, one per product.
    pub lines: Vec<NewOrderLine>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrderLine {
    pub product_id: Uuid,
    #[schema(example = "24")]
    pub quantity: String,
    /// Four decimals at most.
    #[schema(example = "1.2500")]
    pub unit_cost: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderVersion {
    pub version: i64,
}

/// A goods receipt: what arrived on which lines.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReceipt {
    pub lines: Vec<NewReceiptLine>,
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReceiptLine {
    pub line_no: i32,
    #[schema(example = "12")]
    pub quantity: String,
    /// The cost on the supplier's invoice, when it differs from the order's.
    pub unit_cost: Option<String>,
}

/// A goods receipt as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct Receipt {
    pub id: Uuid,
    pub order: Order,
    pub lines: Vec<ReceivedLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReceivedLine {
    pub line_no: i32,
    pub product_id: Uuid,
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// The level at the order's location after it (absent when a retry replays the receipt).
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock_after: Option<Decimal>,
    /// The product's cost price after it (cost readers only).
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_after: Option<Decimal>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct OrderQuery {
    #[param(pattern = "^(draft|ordered|partially_received|received|cancelled)$")]
    pub status: Option<String>,
    pub supplier_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

const STATUSES: [&str; 5] = [
    "draft",
    "ordered",
    "partially_received",
    "received",
    "cancelled",
];

fn no_such_order() -> ApiError {
    ApiError::NotFound {
        code: "purchase_order.not_found",
        detail: "There is no such purchase order.".to_owned(),
    }
}

/// Cost fields follow the cost price's field permission.
fn shown(mut order: Order, caller: &AuthContext) -> Order {
    if !caller.has(catalog::COST_PRICE_READ) {
        order.lines.iter_mut().for_each(|l| l.unit_cost = None);
    }
    order
}

fn checked_lines(new: &NewOrder) -> Result<Vec<OrderLine>, ApiError> {
    let mut errors = Vec::new();
    if new.lines.is_empty() || new.lines.len() > 500 {
        errors.push(FieldError::new("lines", "must have 1 to 500 lines"));
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    for (i, line) in new.lines.iter().enumerate() {
        let quantity = match Quantity::parse(&line.quantity).map(Quantity::value) {
            Ok(q) if !q.is_zero() => Some(q),
            Ok(_) => {
                errors.push(FieldError::new(
                    format!("lines[{i}].quantity"),
                    "must be more than zero",
                ));
                None
            }
            Err(e) => {
                errors.push(FieldError::new(format!("lines[{i}].quantity"), e));
                None
            }
        };
        let cost = parse_amount(&line.unit_cost, 4)
            .map_err(|e| errors.push(FieldError::new(format!("lines[{i}].unit_cost"), e)))
            .ok();
        if !seen.insert(line.product_id) {
            errors.push(FieldError::new(
                format!("lines[{i}].product_id"),
                "one line per product",
            ));
        }
        if let (Some(quantity), Some(cost)) = (quantity, cost) {
            lines.push(OrderLine {
                line_no: i32::try_from(i + 1).unwrap_or(i32::MAX),
                product_id: line.product_id,
                quantity,
                unit_cost: Some(cost),
                received_quantity: Decimal::ZERO,
            });
        }
    }
    if new.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        errors.push(FieldError::new("note", "must be at most 500 characters"));
    }
    match errors.is_empty() {
        true => Ok(lines),
        false => Err(ApiError::Validation(errors)),
    }
}

/// Create a purchase order (a draft). Takes an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/purchase-orders", tag = "purchasing", security(("bearer" = [])), request_body = NewOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same order", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Created as a draft", body = Order),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "purchase_orders", &body)?;
    let new: NewOrder = from_value(body)?;
    let mut conn = state.pool().acquire().await?;
    if let Some(id) = key.earlier(&mut conn).await? {
        return answer(&mut conn, id, &caller, StatusCode::CREATED, true).await;
    }
    let lines = checked_lines(&new)?;
    if store::supplier(&mut conn, new.supplier_id, false)
        .await?
        .is_none()
    {
        return Err(ApiError::invalid("supplier_id", "is not a supplier"));
    }
    if !places::location_exists(&mut conn, new.location_id).await? {
        return Err(ApiError::invalid("location_id", "is not a location"));
    }
    let ids: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
    let facts = catalog::stock_facts(&mut conn, &ids).await?;
    if let Some(i) = ids.iter().position(|id| {
        !facts
            .iter()
            .any(|f| f.id == *id && f.track_stock && !f.archived)
    }) {
        return Err(ApiError::invalid(
            format!("lines[{i}].product_id"),
            "is not a product that tracks stock",
        ));
    }
    drop(conn);
    let now = state.clock().now();
    let id = new_id();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(earlier) = key.claim(&mut tx, id, caller.user_id, now).await? {
        tx.rollback().await?;
        let mut conn = state.pool().acquire().await?;
        return answer(&mut conn, earlier, &caller, StatusCode::CREATED, true).await;
    }
    let order = Order {
        id,
        number: store::next_order_number(&mut tx).await?,
        supplier_id: new.supplier_id,
        location_id: new.location_id,
        status: "draft".to_owned(),
        note: new
            .note
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned),
        created_by: caller.user_id,
        created_at: now,
        ordered_at: None,
        version: 1,
        lines,
    };
    store::insert_order(&mut tx, &order).await?;
    tx.record(Change::new(MODULE, "purchase_order", id, "purchase_order.create").after(json!({
        "number": order.number, "supplier_id": order.supplier_id, "location_id": order.location_id, "note": order.note,
        "lines": order.lines.iter().map(|l| json!({"line_no": l.line_no, "product_id": l.product_id,
            "quantity": l.quantity.to_string(), "unit_cost": l.unit_cost.map(|c| c.to_string())})).collect::<Vec<_>>(),
    })))
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(shown(order, &caller))).into_response())
}

async fn answer(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
    caller: &AuthContext,
    status: StatusCode,
    replayed: bool,
) -> Result<Response, ApiError> {
    let order = store::order(conn, id, false)
        .await?
        .ok_or_else(no_such_order)?;
    let mut response = (status, Json(shown(order, caller))).into_response();
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    Ok(response)
}

/// A page of purchase orders, newest first (their lines with `GET .../{id}`).
#[utoipa::path(get, path = "/api/v1/purchase-orders", tag = "purchasing", security(("bearer" = [])), params(OrderQuery),
    responses(
        (status = 200, description = "A page of orders", body = Page<Order>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<OrderQuery>,
) -> Result<Json<Page<Order>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    if query
        .status
        .as_deref()
        .is_some_and(|s| !STATUSES.contains(&s))
    {
        return Err(ApiError::invalid("status", "is not an order status"));
    }
    let mut conn = state.pool().acquire().await?;
    let rows = store::orders(
        &mut conn,
        query.status.as_deref(),
        query.supplier_id,
        offset,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// One purchase order with its lines (unit costs for readers of cost prices).
#[utoipa::path(get, path = "/api/v1/purchase-orders/{id}", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The order", body = Order),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (`purchase_order.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let mut conn = state.pool().acquire().await?;
    answer(&mut conn, id, &caller, StatusCode::OK, false).await
}

async fn transition(
    state: &AppState,
    caller: &AuthContext,
    id: Uuid,
    version: i64,
    action: &str,
) -> Result<Response, ApiError> {
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    let order = store::order(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_order)?;
    ApiError::check_version("purchase order", order.version, version)?;
    let next = rules::next_status(&order.status, action).map_err(|detail| ApiError::Conflict {
        code: "purchase_order.wrong_state",
        detail,
    })?;
    store::set_order_status(&mut tx, id, next, now).await?;
    tx.record(
        Change::new(
            MODULE,
            "purchase_order",
            id,
            if action == "order" {
                "purchase_order.order"
            } else {
                "purchase_order.cancel"
            },
        )
        .before(json!({"status": order.status}))
        .after(json!({"status": next})),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    answer(&mut conn, id, caller, StatusCode::OK, false).await
}

/// Mark a draft as ordered (sent to the supplier).
#[utoipa::path(post, path = "/api/v1/purchase-orders/{id}/order", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = OrderVersion,
    responses(
        (status = 200, description = "Ordered", body = Order),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (`purchase_order.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft (`purchase_order.wrong_state`) or a stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn order(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<OrderVersion>,
) -> Result<Response, ApiError> {
    transition(&state, &caller, id, body.version, "order").await
}

/// Cancel an order nothing was received against.
#[utoipa::path(post, path = "/api/v1/purchase-orders/{id}/cancel", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = OrderVersion,
    responses(
        (status = 200, description = "Cancelled", body = Order),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (`purchase_order.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Goods were received (`purchase_order.wrong_state`) or a stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<OrderVersion>,
) -> Result<Response, ApiError> {
    transition(&state, &caller, id, body.version, "cancel").await
}

/// Record a goods receipt: stock at the order's location rises (movement `received`), the cost
/// price follows `purchasing.cost_method`, the supplier's last price is kept. More than expected
/// is refused unless `purchasing.allow_over_receipt`. Takes an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/purchase-orders/{id}/receipts", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same receipt", pattern = "^[!-~]{1,255}$")),
    request_body = NewReceipt,
    responses(
        (status = 201, description = "Received", body = Receipt),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (`purchase_order.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not ordered (`purchase_order.wrong_state`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), more than ordered (`purchase_order.over_receipt`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
// Stays whole: one transaction from the key's claim to the commit (the order locked, the lines
// applied, the receipt and the order's state written, the audit record); its parts are already
// `received_lines`, `apply_lines` and `replay_receipt`.
pub async fn receive(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let key = CreateKey::read(&headers, caller.user_id, "goods_receipts", &body)?;
    let new: NewReceipt = from_value(body)?;
    let business = Business::cached(&state)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no business")))?;
    let method = business
        .text("purchasing.cost_method", "moving_average")
        .to_owned();
    let over_allowed = business.flag("purchasing.allow_over_receipt", false);
    let now = state.clock().now();
    let receipt_id = new_id();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if let Some(earlier) = key.claim(&mut tx, receipt_id, caller.user_id, now).await? {
        tx.rollback().await?;
        return replay_receipt(&state, &caller, id, earlier).await;
    }
    let order = store::order(&mut tx, id, true)
        .await?
        .ok_or_else(no_such_order)?;
    rules::next_status(&order.status, "receive").map_err(|detail| ApiError::Conflict {
        code: "purchase_order.wrong_state",
        detail,
    })?;
    let lines = received_lines(&order, &new, over_allowed)?;
    let (written, mut shown_lines) = apply_lines(
        &mut tx,
        &order,
        &lines,
        &method,
        receipt_id,
        caller.user_id,
        now,
    )
    .await?;
    store::insert_receipt(
        &mut tx,
        receipt_id,
        id,
        new.note.as_deref(),
        caller.user_id,
        now,
        &written,
    )
    .await?;
    let products: Vec<Uuid> = written.iter().map(|l| l.product_id).collect();
    let prices: Vec<Decimal> = written.iter().map(|l| l.unit_cost).collect();
    store::note_prices(&mut tx, order.supplier_id, &products, &prices, now).await?;
    let complete = order.lines.iter().all(|l| {
        l.received_quantity
            + written
                .iter()
                .filter(|w| w.line_no == l.line_no)
                .map(|w| w.quantity)
                .sum::<Decimal>()
            >= l.quantity
    });
    let status = if complete {
        "received"
    } else {
        "partially_received"
    };
    store::set_order_status(&mut tx, id, status, now).await?;
    tx.record(
        Change::new(MODULE, "goods_receipt", receipt_id, "purchase_order.receive").after(json!({
            "order_id": id, "number": order.number, "status": status, "cost_method": method,
            "lines": written.iter().map(|l| json!({"line_no": l.line_no, "product_id": l.product_id, "quantity": l.quantity.to_string(),
                "unit_cost": l.unit_cost.to_string(), "cost_after": l.cost_after.to_string()})).collect::<Vec<_>>(),
        })),
    )
    .await?;
    tx.commit().await?;
    let mut conn = state.pool().acquire().await?;
    let order = store::order(&mut conn, id, false)
        .await?
        .ok_or_else(no_such_order)?;
    if !caller.has(catalog::COST_PRICE_READ) {
        shown_lines.iter_mut().for_each(|l| l.cost_after = None);
    }
    Ok((
        StatusCode::CREATED,
        Json(Receipt {
            id: receipt_id,
            order: shown(order, &caller),
            lines: shown_lines,
        }),
    )
        .into_response())
}

/// A retried goods receipt: the receipt as recorded (without the levels after it).
async fn replay_receipt(
    state: &AppState,
    caller: &AuthContext,
    id: Uuid,
    receipt_id: Uuid,
) -> Result<Response, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let order = store::order(&mut conn, id, false)
        .await?
        .ok_or_else(no_such_order)?;
    let costs = caller.has(catalog::COST_PRICE_READ);
    let lines = store::receipt_lines(&mut conn, receipt_id)
        .await?
        .into_iter()
        .map(|(line_no, product_id, quantity, cost_after)| ReceivedLine {
            line_no,
            product_id,
            quantity,
            stock_after: None,
            cost_after: costs.then_some(cost_after),
        })
        .collect();
    let mut response = (
        StatusCode::CREATED,
        Json(Receipt {
            id: receipt_id,
            order: shown(order, caller),
            lines,
        }),
    )
        .into_response();
    idempotency::mark_replayed(&mut response);
    Ok(response)
}

/// Each received line: stock in at the order's location (in product order, as sales lock
/// levels), the cost price by `method`, the supplier's price kept.
async fn apply_lines(
    tx: &mut AuditedTx,
    order: &Order,
    lines: &[(&OrderLine, Decimal, Decimal)],
    method: &str,
    receipt_id: Uuid,
    user_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(Vec<ReceiptLine>, Vec<ReceivedLine>), ApiError> {
    let note = format!("purchase order {}", order.number);
    let mut sorted: Vec<&(&OrderLine, Decimal, Decimal)> = lines.iter().collect();
    sorted.sort_by_key(|(line, _, _)| line.product_id);
    let mut written = Vec::new();
    let mut shown_lines = Vec::new();
    for (line, quantity, unit_cost) in sorted {
        let on_hand = stock::on_hand(tx, line.product_id).await?;
        let before = catalog::stock_facts(tx, &[line.product_id])
            .await?
            .first()
            .and_then(|f| f.cost_price);
        let cost_after = rules::cost_after(method, before, on_hand, *quantity, *unit_cost);
        let stock_after = stock::receive_goods(
            tx,
            line.product_id,
            order.location_id,
            *quantity,
            receipt_id,
            &note,
            user_id,
            now,
        )
        .await?;
        catalog::set_cost_price(tx, line.product_id, cost_after).await?;
        written.push(ReceiptLine {
            line_no: line.line_no,
            product_id: line.product_id,
            quantity: *quantity,
            unit_cost: *unit_cost,
            cost_after,
        });
        shown_lines.push(ReceivedLine {
            line_no: line.line_no,
            product_id: line.product_id,
            quantity: *quantity,
            stock_after: Some(stock_after),
            cost_after: Some(cost_after),
        });
    }
    Ok((written, shown_lines))
}

/// The receipt's lines checked against the order: (order line, quantity, unit cost).
fn received_lines<'a>(
    order: &'a Order,
    new: &NewReceipt,
    over_allowed: bool,
) -> Result<Vec<(&'a OrderLine, Decimal, Decimal)>, ApiError> {
    let mut errors = Vec::new();
    let mut over = Vec::new();
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    if new.lines.is_empty() || new.lines.len() > 500 {
        errors.push(FieldError::new("lines", "must have 1 to 500 lines"));
    }
    if new.note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        errors.push(FieldError::new("note", "must be at most 500 characters"));
    }
    for (i, got) in new.lines.iter().enumerate() {
        let Some(line) = order.lines.iter().find(|l| l.line_no == got.line_no) else {
            errors.push(FieldError::new(
                format!("lines[{i}].line_no"),
                "is not a line of this order",
            ));
            continue;
        };
        if !seen.insert(got.line_no) {
            errors.push(FieldError::new(
                format!("lines[{i}].line_no"),
                "is named twice",
            ));
            continue;
        }
        let quantity = match Quantity::parse(&got.quantity).map(Quantity::value) {
            Ok(q) if !q.is_zero() => q,
            Ok(_) => {
                errors.push(FieldError::new(
                    format!("lines[{i}].quantity"),
                    "must be more than zero",
                ));
                continue;
            }
            Err(e) => {
                errors.push(FieldError::new(format!("lines[{i}].quantity"), e));
                continue;
            }
        };
        let unit_cost = match got.unit_cost.as_deref().map(|c| parse_amount(c, 4)) {
            None => line.unit_cost.unwrap_or_default(),
            Some(Ok(c)) => c,
            Some(Err(e)) => {
                errors.push(FieldError::new(format!("lines[{i}].unit_cost"), e));
                continue;
            }
        };
        if let Some(why) = rules::over_receipt(
            line.quantity,
            line.received_quantity,
            quantity,
            over_allowed,
        ) {
            over.push(format!("line {}: {why}", line.line_no));
        }
        lines.push((line, quantity, unit_cost));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if !over.is_empty() {
        return Err(ApiError::Unprocessable {
            code: "purchase_order.over_receipt",
            detail: over.join("; "),
        });
    }
    Ok(lines)
}

/// The order as a PDF for the supplier (unit costs and totals for readers of cost prices).
#[utoipa::path(get, path = "/api/v1/purchase-orders/{id}/pdf", tag = "purchasing", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The order as a PDF", content_type = "application/pdf", body = Vec<u8>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (`purchase_order.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pdf(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    use crate::shared::pdf::{Report, Table, render};
    let costs = caller.has(catalog::COST_PRICE_READ);
    let mut conn = state.pool().acquire().await?;
    let order = store::order(&mut conn, id, false)
        .await?
        .ok_or_else(no_such_order)?;
    let supplier = store::supplier(&mut conn, order.supplier_id, false).await?;
    let ids: Vec<Uuid> = order.lines.iter().map(|l| l.product_id).collect();
    let facts = catalog::stock_facts(&mut conn, &ids).await?;
    let business = Business::cached(&state)
        .await?
        .map(|b| b.name)
        .unwrap_or_default();
    let mut columns = vec![
        ("Line", 10.0, true),
        ("SKU", 30.0, false),
        ("Product", 70.0, false),
        ("Quantity", 22.0, true),
    ];
    if costs {
        columns.extend([("Unit cost", 22.0, true), ("Amount", 24.0, true)]);
    }
    let mut total = Decimal::ZERO;
    let rows = order
        .lines
        .iter()
        .map(|l| {
            let fact = facts.iter().find(|f| f.id == l.product_id);
            let mut row = vec![
                l.line_no.to_string(),
                fact.map(|f| f.sku.clone()).unwrap_or_default(),
                fact.map(|f| f.name.clone()).unwrap_or_default(),
                l.quantity.normalize().to_string(),
            ];
            if costs {
                let cost = l.unit_cost.unwrap_or_default();
                let amount = crate::shared::money::round_half_up(cost * l.quantity, 2);
                total += amount;
                row.extend([crate::shared::money::show(cost, 4), amount.to_string()]);
            }
            row
        })
        .collect();
    let to = supplier.as_ref().map_or("", |s| s.name.as_str());
    let mut header = vec![
        format!("Buyer: {business}"),
        format!("To: {to}"),
        format!(
            "Order no. {} - {} - status {}",
            order.number,
            order.created_at.format("%Y-%m-%d"),
            order.status
        ),
    ];
    if let Some(s) = &supplier
        && let Some(days) = s.payment_terms_days
    {
        header.push(format!("Payment terms: {days} days"));
    }
    if costs {
        header.push(format!("Total: {total}"));
    }
    if let Some(note) = &order.note {
        header.push(format!("Note: {note}"));
    }
    let bytes = render(&Report {
        chart: None,
        title: format!("Purchase order {}", order.number),
        header,
        tables: vec![Table {
            totals: None,
            title: "Lines".to_owned(),
            columns,
            rows,
        }],
        footer: format!("Purchase order {}", order.number),
        landscape: false,
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"purchase-order-{}.pdf\"",
                    order.number
                ),
            ),
        ],
        bytes,
    )
        .into_response())
}
