//! `POST /api/v1/returns` (idempotent), `POST /api/v1/sales/{id}/void`, `GET /api/v1/returns`,
//! `GET /api/v1/returns/{id}`.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::batch::{
    Asked, Books, PreparedReturn, Recorded, audit_after, correction_number, id_conflict, judge,
};
use super::rules::{RETURN_REASONS, VOID_REASONS, void_refunds};
use super::store::{self, Filter, NewDoc, NewLine, NotReturnable, ReturnDoc};
use super::writer::ReturnWriter;
use super::{CREATE, MODULE, VOID, WITHOUT_RECEIPT};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::db::changes::KeepsCaches;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page};
use crate::core::http::{page, page_limit, time_cursor, time_cursor_of};
use crate::core::idempotency;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::plugs::management::api::catalog;
use crate::plugs::management::api::customers;
use crate::plugs::management::api::stock::{ComingBack, put_back};
use crate::plugs::operations::api::approvals::{self, Used, Wanted};
use crate::plugs::operations::api::cash::{self, LockedSession};
use crate::plugs::operations::api::sales::{self, SoldSale};
use crate::shared::ids::new_id;
use crate::shared::money::{Money, Quantity};

const MAX_LINES: usize = 500;
const MAX_REFUNDS: usize = 20;
const METHODS: &[&str] = &["cash", "card", "voucher", "other"];

/// Goods given back, against their sale (or, with a manager's approval, without a receipt).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReturn {
    /// Optional client-made id (UUIDv7): a return with this id from the same request replays.
    pub id: Option<Uuid>,
    /// The register that refunds (its open session pays cash refunds out).
    pub register_id: Uuid,
    /// The sale given back; none: a return without a receipt (always needs an approval from a
    /// holder of `operations.returns.without_receipt`).
    pub original_sale_id: Option<Uuid>,
    /// The customer giving back (`GET /api/v1/customers`); default: the sale's. With a sale
    /// that names a customer, only that customer.
    pub customer_id: Option<Uuid>,
    pub lines: Vec<NewReturnLine>,
    /// How the money goes back; the amounts must add up to the return's total.
    pub refunds: Vec<NewRefund>,
    /// `defective`, `damaged`, `wrong_item`, `changed_mind`, `price_dispute` or `other`.
    #[schema(example = "defective")]
    pub reason_code: String,
    /// A manager's approval (`POST /api/v1/approvals`, action `operations.returns.create`).
    pub approval_ref: Option<String>,
}

/// One line given back.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReturnLine {
    /// The sale's line (with a receipt). Sale lines are identified by their `line_no`.
    pub line_no: Option<i32>,
    /// The product (without a receipt only).
    pub product_id: Option<Uuid>,
    /// The price refunded per unit (without a receipt only; default: the catalog price).
    pub unit_price: Option<String>,
    #[schema(example = "1")]
    pub quantity: String,
    /// Back on the shelf (default); `false`: written off as damaged.
    pub restock: Option<bool>,
}

/// One refund.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// `cash`, `card`, `voucher` or `other`.
    pub method: String,
    #[schema(example = "2.50")]
    pub amount: String,
}

/// Voiding a sale.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVoid {
    /// `cashier_error`, `customer_cancelled`, `payment_failed`, `test_sale` or `other`.
    #[schema(example = "cashier_error")]
    pub reason_code: String,
    /// A manager's approval (`POST /api/v1/approvals`, action `operations.sales.void`).
    pub approval_ref: Option<String>,
}

fn created(doc: ReturnDoc, replayed: bool) -> Response {
    let location = format!("/api/v1/returns/{}", doc.id);
    let mut response = (StatusCode::CREATED, Json(doc)).into_response();
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    response
}

async fn replay(state: &AppState, id: Uuid, scale: u32) -> Result<Response, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let doc = store::load(&mut conn, id, scale)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("idempotent return {id} vanished")))?;
    Ok(created(doc, true))
}

fn scale_of(business: &Option<Business>) -> Result<u32, ApiError> {
    business
        .as_ref()
        .map(|b| b.currency_scale)
        .ok_or(ApiError::SetupRequired)
}

/// Give goods back against their sale (or without a receipt): a numbered document of its own
/// with negative totals, refunds that come out of the register's open session (cash) or are
/// recorded by method, and goods back on the shelf (or written off as damaged). Needs an
/// `Idempotency-Key`. A cashier without `operations.returns.create` needs a manager's approval;
/// a return without a receipt always does.
#[utoipa::path(post, path = "/api/v1/returns", tag = "returns", security(("bearer" = [])), request_body = NewReturn,
    params(("Idempotency-Key" = String, Header, description = "Unique per return attempt (a UUID); required", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Recorded (or replayed, with `Idempotent-Replayed: true`)", body = ReturnDoc),
        (status = 400, description = "No or bad Idempotency-Key (`idempotency.key_required`, `idempotency.key_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`), another cashier's session (`cash.not_your_session`), an approval needed (`approval.required`) or not fitting (`approval.invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No open session on the register (`cash.no_open_session`), more than is returnable (`return.exceeds_returnable`), a voided sale (`sale.voided`), a client id used by another request (`return.id_conflict`), a sale other returns kept changing meanwhile (`return.contention`: send the same request again), or a closed day (`period.closed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), refunds that do not add up to the total (`refund.mismatch`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let mut response = give_back(&state, &caller, &headers, body)
        .await
        .into_response();
    // A return writes no table that is cached (settings, registers, sessions, products, users):
    // answering it need not make every till read those again.
    response.extensions_mut().insert(KeepsCaches);
    response
}

async fn give_back(
    state: &AppState,
    caller: &AuthContext,
    headers: &HeaderMap,
    body: Value,
) -> Result<Response, ApiError> {
    let key = idempotency::key(headers)?;
    let hash = idempotency::request_hash(&body);
    let new: NewReturn = from_value(body)?;
    let key = idempotency::scoped(&format!("{}/{}", caller.user_id, new.register_id), &key);
    let business = Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let scale = business.currency_scale;
    if let Some(id) = earlier_return(state, caller, &new, &key, &hash).await? {
        return replay(state, id, scale).await;
    }
    let checked = check_return(state, caller, &new, scale).await?;
    let prepared = prepare(state, caller, new, checked, key, hash, business).await?;
    match ReturnWriter::of(state).write(Box::new(prepared)).await? {
        Recorded::New(answer) => {
            state.live().publish(
                "returns",
                "return.completed",
                json!({"id": answer.id, "number": answer.number, "register_id": answer.register_id,
                       "original_sale_id": answer.original_sale_id, "total": answer.totals.total}),
            );
            Ok(created(*answer, false))
        }
        Recorded::Replay(id) => replay(state, id, scale).await,
    }
}

/// A checked return made ready for the writer: its register's open session (the caller's, or
/// one the caller may refund from) and its approval used, bound to this request (a retry of the
/// same request may use it again), for the refund it comes to against the sale's books now.
async fn prepare(
    state: &AppState,
    caller: &AuthContext,
    new: NewReturn,
    checked: CheckedReturn,
    key: String,
    hash: Vec<u8>,
    business: Business,
) -> Result<PreparedReturn, ApiError> {
    let session = cash::open_session(state, new.register_id)
        .await?
        .ok_or_else(cash::no_open_session)?;
    if session.opened_by != caller.user_id {
        cash::refuse_others(state, caller, session.opened_by).await?;
    }
    let customer_id = return_customer(state, new.customer_id, checked.sale.as_ref()).await?;
    let mut prepared = PreparedReturn {
        id: new.id.unwrap_or_else(new_id),
        actor: Actor::user(caller),
        user_id: caller.user_id,
        register_id: new.register_id,
        register_code: checked.register.code,
        location_id: checked.register.location_id,
        session_id: session.id,
        sale: checked.sale,
        customer_id,
        asked: checked.asked,
        refunds: checked.refunds,
        reason_code: new.reason_code,
        approval: None,
        client_id: new.id.is_some(),
        key,
        hash,
        business,
        offline: None,
    };
    if let Some(approval_ref) = &new.approval_ref {
        // Priced against the books as they are now (the writer prices again, and refuses a
        // refund above this one).
        let mut conn = state.pool().acquire().await?;
        let sales: Vec<Uuid> = prepared.sale.iter().map(|s| s.id).collect();
        let books = Books::read(&mut conn, &sales).await?;
        let refund = judge(&prepared, 0, &books, state.clock().now())?.refund();
        let wanted = Wanted {
            action: CREATE,
            requester: caller.user_id,
            register_id: Some(new.register_id),
            subject_id: None,
            sale_id: new.original_sale_id,
            amount: Some(refund),
            without_receipt: new.original_sale_id.is_none(),
            // Bound to this request, its key and its body (as a sale's).
            request: &format!("{}:{}", prepared.key, hex::encode(&prepared.hash)),
        };
        let used =
            approvals::consume(&mut conn, approval_ref, &wanted, state.clock().now()).await?;
        prepared.approval = Some(used);
    }
    Ok(prepared)
}

/// The request behind a document: its scoped idempotency key and body digest.
#[derive(Clone, Copy)]
struct Request<'a> {
    key: &'a str,
    hash: &'a [u8],
}

/// The return a retry of this request should replay: one its key or its client-made id made
/// (a client id made by another request is refused).
async fn earlier_return(
    state: &AppState,
    caller: &AuthContext,
    new: &NewReturn,
    key: &str,
    hash: &[u8],
) -> Result<Option<Uuid>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    if let Some(stored) = idempotency::find(&mut conn, "returns", key).await? {
        return stored.replay_for(hash).map(Some);
    }
    let Some(id) = new.id else {
        return Ok(None);
    };
    match store::same_request(&mut conn, id, caller.user_id, hash).await? {
        Some(true) => Ok(Some(id)),
        Some(false) => Err(id_conflict()),
        None => Ok(None),
    }
}

/// A return request as checked before writing (reads only).
struct CheckedReturn {
    register: places::SaleRegister,
    sale: Option<SoldSale>,
    asked: Vec<Asked>,
    refunds: Vec<(String, Decimal)>,
}

/// Checks a return's fields, its register, its sale and lines, and whether it needs an approval
/// it lacks; every bad field is reported at once.
async fn check_return(
    state: &AppState,
    caller: &AuthContext,
    new: &NewReturn,
    scale: u32,
) -> Result<CheckedReturn, ApiError> {
    let mut errors = Vec::new();
    if !RETURN_REASONS.contains(&new.reason_code.as_str()) {
        errors.push(FieldError::new(
            "reason_code",
            format!("must be one of {}", RETURN_REASONS.join(", ")),
        ));
    }
    if new.lines.is_empty() || new.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let refunds = check_refunds(&new.refunds, scale, &mut errors);
    crate::core::devices::check_register(state, caller.origin.device_id, new.register_id).await?;
    let register = places::register_for_sale(state, new.register_id).await?;
    if register.is_none() {
        errors.push(FieldError::new("register_id", "is not a register"));
    }
    let sale = match new.original_sale_id {
        Some(id) => {
            let sale = sales::sold_sale_cached(state, id).await?;
            if sale.is_none() {
                errors.push(FieldError::new("original_sale_id", "is not a sale"));
            }
            // A voided sale is refused by the writer (`sale.voided`), which reads its books.
            sale
        }
        None => None,
    };
    let asked = match &sale {
        Some(sale) => check_sale_lines(&new.lines, sale, &mut errors),
        None if new.original_sale_id.is_some() => Vec::new(),
        None => check_product_lines(state, &new.lines, scale, &mut errors).await?,
    };
    let (Some(register), true) = (register, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let without_receipt = new.original_sale_id.is_none();
    if (without_receipt || !caller.has(CREATE)) && new.approval_ref.is_none() {
        return Err(match without_receipt {
            true => approvals::required(WITHOUT_RECEIPT),
            false => approvals::required(CREATE),
        });
    }
    Ok(CheckedReturn {
        register,
        sale,
        asked,
        refunds,
    })
}

/// A return's lines as written, the goods coming back, and its (negative) tax buckets.
struct PricedReturn {
    lines: Vec<NewLine>,
    coming_back: Vec<ComingBack>,
    /// (rate, net, tax, gross), negative.
    taxes: Vec<(Decimal, Decimal, Decimal, Decimal)>,
}

/// Begins a document's audited transaction and claims its request's key in `scope`: the
/// transaction, or the document a committed retry made (`Err`).
async fn begin(
    state: &AppState,
    caller: &AuthContext,
    scope: &str,
    request: Request<'_>,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<Result<AuditedTx, Uuid>, ApiError> {
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    let claimed = idempotency::claim(
        &mut tx,
        scope,
        request.key,
        request.hash,
        id,
        caller.user_id,
        now,
    )
    .await?;
    match claimed {
        None => Ok(Ok(tx)),
        Some(stored) => {
            tx.rollback().await?;
            Ok(Err(stored.replay_for(request.hash)?))
        }
    }
}

/// Reads document `id` back as answered, appends its audit record (`record`, from it) and commits.
async fn finish(
    mut tx: AuditedTx,
    id: Uuid,
    scale: u32,
    record: impl FnOnce(&ReturnDoc) -> Change,
) -> Result<Recorded, ApiError> {
    let answer = store::load(&mut tx, id, scale)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("document {id} not read back")))?;
    tx.record(record(&answer)).await?;
    tx.commit().await?;
    Ok(Recorded::New(Box::new(answer)))
}

/// The customer a return names: the one asked for (a live customer; with a sale that names a
/// customer, that one only), else the sale's.
pub(super) async fn return_customer(
    state: &AppState,
    asked: Option<Uuid>,
    sale: Option<&SoldSale>,
) -> Result<Option<Uuid>, ApiError> {
    let sold_to = sale.and_then(|s| s.customer_id);
    let Some(asked) = asked else {
        return Ok(sold_to);
    };
    if sold_to.is_some_and(|c| c != asked) {
        return Err(ApiError::invalid(
            "customer_id",
            "is not the customer the sale names",
        ));
    }
    if sold_to.is_none() {
        let mut conn = state.pool().acquire().await?;
        if customers::group_of(&mut conn, asked).await?.is_none() {
            return Err(ApiError::invalid("customer_id", "is not a customer"));
        }
    }
    Ok(Some(asked))
}

/// Uses the approval a request carries, if any, inside its transaction.
async fn use_approval(
    tx: &mut AuditedTx,
    approval_ref: Option<&str>,
    wanted: &Wanted<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Used>, ApiError> {
    match approval_ref {
        Some(approval_ref) => Ok(Some(
            approvals::consume(tx, approval_ref, wanted, now).await?,
        )),
        None => Ok(None),
    }
}

/// Each refund's method and amount (more than zero).
pub(super) fn check_refunds(
    new: &[NewRefund],
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> Vec<(String, Decimal)> {
    if new.is_empty() || new.len() > MAX_REFUNDS {
        errors.push(FieldError::new(
            "refunds",
            format!("must hold 1 to {MAX_REFUNDS} refunds"),
        ));
    }
    let mut out = Vec::with_capacity(new.len());
    for (i, r) in new.iter().enumerate() {
        if !METHODS.contains(&r.method.as_str()) {
            errors.push(FieldError::new(
                format!("refunds[{i}].method"),
                "must be cash, card, voucher or other",
            ));
        }
        let field = format!("refunds[{i}].amount");
        match FieldError::gather(errors, &field, Money::parse_in(&r.amount, scale)) {
            Some(a) if a.value().is_zero() => {
                errors.push(FieldError::new(field, "must be more than zero"))
            }
            Some(a) => out.push((r.method.clone(), a.value())),
            None => {}
        }
    }
    out
}

/// Line `i`'s quantity: more than zero, three decimals at most.
fn line_quantity(i: usize, text: &str, errors: &mut Vec<FieldError>) -> Option<Decimal> {
    let field = format!("lines[{i}].quantity");
    match FieldError::gather(errors, &field, Quantity::parse(text)) {
        Some(q) if q.value().is_zero() => {
            errors.push(FieldError::new(field, "must be more than zero"));
            None
        }
        q => q.map(Quantity::value),
    }
}

/// The lines of a return with a receipt: each names a line of `sale` once, by its number, and
/// gives back at most what it sold.
pub(super) fn check_sale_lines(
    new: &[NewReturnLine],
    sale: &SoldSale,
    errors: &mut Vec<FieldError>,
) -> Vec<Asked> {
    let mut seen = HashSet::new();
    let mut asked = Vec::with_capacity(new.len());
    for (i, line) in new.iter().enumerate() {
        let quantity = line_quantity(i, &line.quantity, errors);
        if line.product_id.is_some() || line.unit_price.is_some() {
            errors.push(FieldError::new(
                format!("lines[{i}]"),
                "names its sale line by line_no only (product and price are the sale's)",
            ));
        }
        let Some(n) = line.line_no else {
            errors.push(FieldError::new(
                format!("lines[{i}].line_no"),
                "is required",
            ));
            continue;
        };
        let Some(sold) = sale.lines.iter().find(|l| l.line_no == n) else {
            errors.push(FieldError::new(
                format!("lines[{i}].line_no"),
                "is not a line of this sale",
            ));
            continue;
        };
        if !seen.insert(n) {
            errors.push(FieldError::new(
                format!("lines[{i}].line_no"),
                "appears twice",
            ));
        }
        match quantity {
            Some(q) if q > sold.quantity => errors.push(FieldError::new(
                format!("lines[{i}].quantity"),
                format!("is more than was sold ({})", sold.quantity),
            )),
            Some(quantity) => asked.push(Asked {
                sale_line: Some(sold.clone()),
                product: None,
                quantity,
                unit_price: sold.unit_price,
                restock: line.restock.unwrap_or(true),
            }),
            None => {}
        }
    }
    asked
}

/// The lines of a return without a receipt: each names a product and, optionally, the price
/// refunded per unit (default: the catalog's).
pub(super) async fn check_product_lines(
    state: &AppState,
    new: &[NewReturnLine],
    scale: u32,
    errors: &mut Vec<FieldError>,
) -> Result<Vec<Asked>, ApiError> {
    let ids: Vec<Uuid> = new.iter().filter_map(|l| l.product_id).collect();
    let products: HashMap<Uuid, catalog::SaleProduct> =
        catalog::products_for_sale(state, &ids).await?;
    let mut asked = Vec::with_capacity(new.len());
    for (i, line) in new.iter().enumerate() {
        let quantity = line_quantity(i, &line.quantity, errors);
        if line.line_no.is_some() {
            errors.push(FieldError::new(
                format!("lines[{i}].line_no"),
                "needs original_sale_id (a return without a receipt names products)",
            ));
        }
        let product = match line.product_id.map(|id| products.get(&id)) {
            Some(Some(p)) => Some(p.clone()),
            Some(None) => {
                errors.push(FieldError::new(
                    format!("lines[{i}].product_id"),
                    "is not a product",
                ));
                None
            }
            None => {
                errors.push(FieldError::new(
                    format!("lines[{i}].product_id"),
                    "is required without a receipt",
                ));
                None
            }
        };
        let unit_price = match (&line.unit_price, &product) {
            (Some(text), _) => FieldError::gather(
                errors,
                format!("lines[{i}].unit_price"),
                Money::parse_in(text, scale),
            )
            .map(Money::value),
            (None, Some(p)) => Some(p.price),
            (None, None) => None,
        };
        if let (Some(product), Some(quantity), Some(unit_price)) = (product, quantity, unit_price) {
            asked.push(Asked {
                sale_line: None,
                product: Some(product),
                quantity,
                unit_price,
                restock: line.restock.unwrap_or(true),
            });
        }
    }
    Ok(asked)
}

/// Void a sale while its cash session is open: a reversal document (numbered, the sale's full
/// negative mirror, its payments given back, its goods back on the shelf); the sale itself never
/// changes. Afterwards, make a return. A cashier without `operations.sales.void` needs a
/// manager's approval. Accepts an `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/sales/{id}/void", tag = "returns", security(("bearer" = [])), request_body = NewVoid,
    params(("id" = Uuid, Path, description = "Sale id"),
           ("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same void", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Voided: the reversal document", body = ReturnDoc),
        (status = 403, description = "Missing permission (`rbac.forbidden`), another cashier's session (`cash.not_your_session`), an approval needed (`approval.required`) or not fitting (`approval.invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sale (`sale.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Voided already (`sale.already_voided`), partly returned (`sale.has_returns`), its session closed (`sale.session_closed`: make a return), or a closed day (`period.closed`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn void(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(sale_id): Path<Uuid>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let client_key = idempotency::optional_key(&headers)?;
    let hash = idempotency::request_hash(&body);
    let new: NewVoid = from_value(body)?;
    let key = idempotency::scoped(
        &format!("{}/{sale_id}", caller.user_id),
        &client_key.unwrap_or_else(|| new_id().to_string()),
    );
    let business = Business::cached(&state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let scale = business.currency_scale;
    {
        let mut conn = state.pool().acquire().await?;
        if let Some(stored) = idempotency::find(&mut conn, "voids", &key).await? {
            let id = stored.replay_for(&hash)?;
            return replay(&state, id, scale).await;
        }
    }
    let (sale, register) = check_void(&state, &caller, &new, sale_id).await?;
    let request = Request {
        key: &key,
        hash: &hash,
    };
    match record_void(&state, &caller, &new, &sale, &register, &business, request).await? {
        Recorded::New(answer) => {
            state.live().publish(
                "returns",
                "sale.voided",
                json!({"id": answer.id, "sale_id": sale_id, "number": answer.number,
                       "register_id": answer.register_id, "total": answer.totals.total}),
            );
            Ok(created(*answer, false))
        }
        Recorded::Replay(id) => replay(&state, id, scale).await,
    }
}

/// The sale to void and its register, if it may be voided as far as reads tell (the
/// transaction checks its session and its lines again).
async fn check_void(
    state: &AppState,
    caller: &AuthContext,
    new: &NewVoid,
    sale_id: Uuid,
) -> Result<(SoldSale, places::SaleRegister), ApiError> {
    if !VOID_REASONS.contains(&new.reason_code.as_str()) {
        return Err(ApiError::invalid(
            "reason_code",
            format!("must be one of {}", VOID_REASONS.join(", ")),
        ));
    }
    let mut conn = state.pool().acquire().await?;
    let sale = sales::sold_sale(&mut conn, sale_id)
        .await?
        .ok_or_else(|| sales::not_found(sale_id))?;
    match store::corrected(&mut conn, sale_id).await? {
        (Some(_), _) => return Err(already_voided()),
        (None, n) if n > 0 => return Err(has_returns()),
        _ => {}
    }
    drop(conn);
    if !caller.has(VOID) && new.approval_ref.is_none() {
        return Err(approvals::required(VOID));
    }
    let register = places::register_for_sale(state, sale.register_id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("sale {sale_id} has no register")))?;
    Ok((sale, register))
}

/// The void of `sale` as written: its lines, taxes and payments mirrored, its goods back.
fn mirror(sale: &SoldSale) -> PricedReturn {
    let lines = sale
        .lines
        .iter()
        .map(|l| NewLine {
            sale_line_no: Some(l.line_no),
            product_id: l.product_id,
            sku: l.sku.clone(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            total: -l.total,
            tax_rate: l.tax_rate,
            restock: true,
        })
        .collect();
    let coming_back = (1..)
        .zip(&sale.lines)
        .filter(|(_, l)| l.tracked)
        .map(|(line_no, l)| ComingBack {
            line_no,
            product_id: l.product_id,
            quantity: l.quantity,
            restock: true,
        })
        .collect();
    let taxes = sale.taxes.iter().map(|t| (t.0, -t.1, -t.2, -t.3)).collect();
    PricedReturn {
        lines,
        coming_back,
        taxes,
    }
}

/// Share-locks the session of `sale` (a close waits), which must still be open and the caller's.
async fn lock_sale_session(
    tx: &mut AuditedTx,
    state: &AppState,
    caller: &AuthContext,
    sale: &SoldSale,
) -> Result<(), ApiError> {
    let session: LockedSession = cash::lock_session(tx, sale.cash_session_id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("sale {} has no session", sale.id)))?;
    if !session.open {
        return Err(ApiError::Conflict {
            code: "sale.session_closed",
            detail: "The sale's cash session is closed: it can no longer be voided; make a return (POST /api/v1/returns).".to_owned(),
        });
    }
    cash::refuse_others(state, caller, session.opened_by).await
}

/// Counts every line of `sale` as given back (refused when a void or a return came first).
async fn give_all_back(tx: &mut AuditedTx, sale: &SoldSale) -> Result<(), ApiError> {
    for line in &sale.lines {
        store::add_returned(tx, sale.id, line.line_no, line.quantity, line.quantity)
            .await
            .map_err(|e| match e {
                NotReturnable::TooMuch(_) => ApiError::Conflict {
                    code: "sale.already_voided",
                    detail: "This sale was voided or partly returned meanwhile; read it again."
                        .to_owned(),
                },
                NotReturnable::Db(e) => e.into(),
            })?;
    }
    Ok(())
}

/// Writes the void of `sale` in one audited transaction: the key, the sale's session (open,
/// share-locked, the caller's), the approval used, every line counted as given back (refused if
/// a return came first), the number, the document, the goods back, the audit record.
async fn record_void(
    state: &AppState,
    caller: &AuthContext,
    new: &NewVoid,
    sale: &SoldSale,
    register: &places::SaleRegister,
    business: &Business,
    request: Request<'_>,
) -> Result<Recorded, ApiError> {
    let now = state.clock().now();
    let year = now.with_timezone(&business.timezone).year();
    let id = new_id();
    let mut tx = match begin(state, caller, "voids", request, id, now).await? {
        Ok(tx) => tx,
        Err(earlier) => return Ok(Recorded::Replay(earlier)),
    };
    lock_sale_session(&mut tx, state, caller, sale).await?;
    let wanted = Wanted {
        action: VOID,
        requester: caller.user_id,
        register_id: Some(sale.register_id),
        subject_id: None,
        sale_id: Some(sale.id),
        amount: Some(sale.total),
        without_receipt: false,
        request: request.key,
    };
    let approval = use_approval(&mut tx, new.approval_ref.as_deref(), &wanted, now).await?;
    // The counter before the returned quantities: the order the returns writer's statement
    // takes them in, so a void and a return of one sale do not deadlock.
    let seq = store::next_number(&mut tx, sale.register_id, year).await?;
    give_all_back(&mut tx, sale).await?;
    let PricedReturn {
        lines,
        coming_back,
        taxes,
    } = mirror(sale);
    let refunds = void_refunds(&sale.payments, sale.change_due);
    let number = correction_number(business, &register.code, year, seq);
    let location_id = sale.location_id.unwrap_or(register.location_id);
    let doc = NewDoc {
        id,
        kind: "void",
        register_id: sale.register_id,
        cash_session_id: sale.cash_session_id,
        cashier_id: caller.user_id,
        original_sale_id: Some(sale.id),
        year,
        seq,
        number: &number,
        currency: &sale.currency,
        prices_include_tax: sale.prices_include_tax,
        net: -sale.net,
        tax: -sale.tax,
        total: -sale.total,
        cash_rounding: -sale.cash_rounding,
        refunds: &refunds,
        taxes: &taxes,
        reason_code: &new.reason_code,
        approval_ref: approval.as_ref().map(|a| a.approval_ref.as_str()),
        approved_by: approval.as_ref().map(|a| a.approver_id),
        location_id,
        request_hash: request.hash,
        customer_id: sale.customer_id,
        at: now,
    };
    store::insert(&mut tx, &doc, &lines).await.map_err(|e| {
        match crate::core::db::violated_constraint(&e) {
            Some("returns_one_void_per_sale") => already_voided(),
            _ => e.into(),
        }
    })?;
    let stock = put_back(
        &mut tx,
        id,
        location_id,
        &coming_back,
        "void",
        caller.user_id,
        now,
    )
    .await?;
    cash::review_later(&mut tx, caller.user_id, now).await?;
    let record = |answer: &ReturnDoc| {
        Change::new(MODULE, "sale", sale.id, "sale.void")
            .sensitive()
            .reason(
                Some(new.reason_code.clone()),
                approval.as_ref().map(|a| a.approval_ref.clone()),
            )
            .after(
                json!({"void_id": id, "document": audit_after(answer, approval.as_ref(), &stock)}),
            )
    };
    finish(tx, id, business.currency_scale, record).await
}

/// 409 `sale.already_voided`.
fn already_voided() -> ApiError {
    ApiError::Conflict {
        code: "sale.already_voided",
        detail: "This sale was voided already.".to_owned(),
    }
}

/// 409 `sale.has_returns`.
fn has_returns() -> ApiError {
    ApiError::Conflict {
        code: "sale.has_returns",
        detail: "Part of this sale was returned already: it cannot be voided as a whole; return the rest instead.".to_owned(),
    }
}

/// One return or void.
#[utoipa::path(get, path = "/api/v1/returns/{id}", tag = "returns", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Return or void id")),
    responses(
        (status = 200, description = "The document", body = ReturnDoc),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document (`return.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<ReturnDoc>, ApiError> {
    let scale = scale_of(&Business::cached(&state).await?)?;
    let mut conn = state.pool().acquire().await?;
    store::load(&mut conn, id, scale)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound {
            code: "return.not_found",
            detail: format!("No return or void with id {id}."),
        })
}

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReturnQuery {
    /// `return` or `void`.
    #[param(pattern = "^(return|void)$")]
    pub kind: Option<String>,
    pub original_sale_id: Option<Uuid>,
    pub register_id: Option<Uuid>,
    pub cashier_id: Option<Uuid>,
    /// At or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

/// Returns and voids, newest first.
#[utoipa::path(get, path = "/api/v1/returns", tag = "returns", security(("bearer" = [])), params(ReturnQuery),
    responses(
        (status = 200, description = "A page of returns and voids", body = Page<ReturnDoc>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<ReturnQuery>,
) -> Result<Json<Page<ReturnDoc>>, ApiError> {
    let limit = page_limit(query.limit, 50, 200)?;
    let after = time_cursor(query.cursor.as_deref())?;
    if let Some(kind) = &query.kind
        && kind != "return"
        && kind != "void"
    {
        return Err(ApiError::invalid("kind", "must be return or void"));
    }
    let scale = scale_of(&Business::cached(&state).await?)?;
    let mut conn = state.pool().acquire().await?;
    let filter = Filter {
        kind: query.kind,
        original_sale_id: query.original_sale_id,
        register_id: query.register_id,
        cashier_id: query.cashier_id,
        from: query.from,
        to: query.to,
    };
    let rows = store::list(&mut conn, &filter, after, limit + 1, scale).await?;
    let (rows, next_cursor) = page(rows, limit, |(at, doc)| time_cursor_of(*at, doc.id));
    Ok(Json(Page {
        items: rows.into_iter().map(|(_, doc)| doc).collect(),
        next_cursor,
    }))
}
