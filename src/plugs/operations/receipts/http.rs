//! `GET /api/v1/sales/{id}/receipt` and `/returns/{id}/receipt` (returns and voids), `POST
//! .../print`, `POST /api/v1/receipts/verify`, and a register's printer
//! (`GET`/`PUT /api/v1/registers/{id}/printer`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::escpos::{self, Encoding};
use super::issue::{self, Collection};
use super::model::Receipt;
use super::print::{self, printer_of};
use super::store::{self, Printer, Render};
use super::text::{self, columns};
use super::verify::{self, Verdict};
use super::{MODULE, fiscal, pdf};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::idempotency;
use crate::core::state::AppState;
use crate::plugs::administration::api::places;

/// How to render.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReceiptQuery {
    /// `json` (default), `text`, `escpos` or `pdf`.
    #[param(pattern = "^(json|text|escpos|pdf)$")]
    pub format: Option<String>,
    /// Paper width in mm, `58` (32 columns) or `80` (48 columns); default: the register
    /// printer's, else 80.
    pub width: Option<u32>,
    /// PDF only: `receipt` (A6, default) or `invoice` (A4).
    #[param(pattern = "^(receipt|invoice)$")]
    pub layout: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Text,
    Escpos,
    Pdf { invoice: bool },
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
            Format::Escpos => "escpos",
            Format::Pdf { .. } => "pdf",
        }
    }
}

fn checked(query: &ReceiptQuery) -> Result<(Format, Option<u32>), ApiError> {
    let mut errors = Vec::new();
    let layout = query.layout.as_deref().unwrap_or("receipt");
    if !matches!(layout, "receipt" | "invoice") {
        errors.push(FieldError::new("layout", "must be receipt or invoice"));
    }
    let format = match query.format.as_deref().unwrap_or("json") {
        "json" => Some(Format::Json),
        "text" => Some(Format::Text),
        "escpos" => Some(Format::Escpos),
        "pdf" => Some(Format::Pdf {
            invoice: layout == "invoice",
        }),
        _ => {
            errors.push(FieldError::new(
                "format",
                "must be json, text, escpos or pdf",
            ));
            None
        }
    };
    if query.width.is_some_and(|w| w != 58 && w != 80) {
        errors.push(FieldError::new("width", "must be 58 or 80 (mm)"));
    }
    if query.layout.is_some() && !matches!(format, Some(Format::Pdf { .. })) {
        errors.push(FieldError::new("layout", "applies to format=pdf only"));
    }
    match format {
        Some(f) if errors.is_empty() => Ok((f, query.width)),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// A sale's receipt. The first render of a document is its original; every later one is marked
/// `COPY n`, counted and audited. Waits (briefly) for the sale's audit record to be chained.
#[utoipa::path(get, path = "/api/v1/sales/{id}/receipt", tag = "receipts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Sale id"), ReceiptQuery),
    responses(
        (status = 200, description = "The receipt: JSON (`Receipt`), `text/plain`, `application/vnd.escpos` bytes or `application/pdf`", body = Receipt),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sale (`sale.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad format, width or layout (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The sale's audit record is not chained yet (`service.unavailable`); try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sale_receipt(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    Query(query): Query<ReceiptQuery>,
) -> Result<Response, ApiError> {
    receipt(&state, &caller, Collection::Sales, id, &query).await
}

/// A return's or a void's receipt (see the sale's).
#[utoipa::path(get, path = "/api/v1/returns/{id}/receipt", tag = "receipts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Return or void id"), ReceiptQuery),
    responses(
        (status = 200, description = "The receipt: JSON (`Receipt`), `text/plain`, `application/vnd.escpos` bytes or `application/pdf`", body = Receipt),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document (`return.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad format, width or layout (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The document's audit record is not chained yet (`service.unavailable`); try again", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn return_receipt(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    Query(query): Query<ReceiptQuery>,
) -> Result<Response, ApiError> {
    receipt(&state, &caller, Collection::Returns, id, &query).await
}

async fn receipt(
    state: &AppState,
    caller: &AuthContext,
    collection: Collection,
    id: Uuid,
    query: &ReceiptQuery,
) -> Result<Response, ApiError> {
    let (format, width) = checked(query)?;
    let business = issue::business(state).await?;
    let mut conn = state.pool().acquire().await?;
    let document = issue::find(&mut conn, collection, id, business.currency_scale).await?;
    drop(conn);
    let place = issue::audit_place(state, &document).await?;
    let printer = printer_of(state, document.register_id()).await?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    let copy = store::count_render(
        &mut tx,
        Render {
            document_id: document.id(),
            kind: document.kind(),
            register_id: document.register_id(),
            format: format.name(),
            user_id: caller.user_id,
            at: now,
        },
    )
    .await?;
    let context = issue::context(&mut tx, &business, &document, copy).await?;
    let receipt = issue::build(state, &business, &document, &context, &place)?;
    tx.record(
        Change::new(MODULE, "receipt", document.id(), "receipt.render").after(json!({
            "kind": document.kind(), "number": document.number(), "copy": copy,
            "format": format.name(),
        })),
    )
    .await?;
    tx.commit().await?;
    let cols = columns(width.unwrap_or(u32::try_from(printer.width_mm).unwrap_or(80)));
    Ok(match format {
        Format::Json => Json(receipt).into_response(),
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text::render(&receipt, cols),
        )
            .into_response(),
        Format::Escpos => {
            let encoding = Encoding::parse(&printer.encoding).unwrap_or(Encoding::Cp858);
            let kick = printer.drawer_kick && copy == 0 && receipt.moves_cash();
            (
                [(header::CONTENT_TYPE, "application/vnd.escpos")],
                escpos::render(&receipt, cols, encoding, kick),
            )
                .into_response()
        }
        Format::Pdf { invoice } => {
            let bytes = match invoice {
                true => pdf::render(
                    &text::invoice(&receipt, pdf::A4.columns()),
                    pdf::A4,
                    &receipt.number,
                ),
                false => pdf::render(
                    &text::layout(&receipt, columns(80)),
                    pdf::A6,
                    &receipt.number,
                ),
            };
            let mut response = ([(header::CONTENT_TYPE, "application/pdf")], bytes).into_response();
            if let Ok(value) =
                HeaderValue::from_str(&format!("inline; filename=\"{}.pdf\"", file_name(&receipt)))
            {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
    })
}

fn file_name(receipt: &Receipt) -> String {
    receipt
        .number
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A print job queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrintQueued {
    pub job_id: Uuid,
    /// 0: the original; n: `COPY n`.
    pub copy: i32,
}

/// Print a sale's receipt on its register's network printer, through the job runner (retried
/// while the printer is off; `print.done` / `print.failed` on the `printer` topic). Accepts an
/// `Idempotency-Key`: a retry answers the same job rather than printing again.
#[utoipa::path(post, path = "/api/v1/sales/{id}/print", tag = "receipts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Sale id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same print job", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 202, description = "Queued", body = PrintQueued),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sale (`sale.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The register has no network printer (`receipt.no_printer`): the till prints `format=escpos` itself", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Key used with another document (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn print_sale(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    print(&state, &caller, &headers, Collection::Sales, id).await
}

/// Print a return's or a void's receipt (see the sale's).
#[utoipa::path(post, path = "/api/v1/returns/{id}/print", tag = "receipts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Return or void id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Optional: a retry with the same key answers the same print job", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 202, description = "Queued", body = PrintQueued),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such document (`return.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The register has no network printer (`receipt.no_printer`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Key used with another document (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn print_return(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    print(&state, &caller, &headers, Collection::Returns, id).await
}

async fn print(
    state: &AppState,
    caller: &AuthContext,
    headers: &HeaderMap,
    collection: Collection,
    id: Uuid,
) -> Result<Response, ApiError> {
    let key = idempotency::optional_key(headers)?
        .map(|k| idempotency::scoped(&caller.user_id.to_string(), &k));
    let hash = idempotency::request_hash(&json!({ "document_id": id }));
    let business = issue::business(state).await?;
    let mut conn = state.pool().acquire().await?;
    if let Some(key) = &key
        && let Some(stored) = idempotency::find(&mut conn, "receipt_prints", key).await?
    {
        return queued_again(&mut conn, stored.replay_for(&hash)?).await;
    }
    let document = issue::find(&mut conn, collection, id, business.currency_scale).await?;
    drop(conn);
    let printer = printer_of(state, document.register_id()).await?;
    if printer.kind != "network" {
        return Err(ApiError::Conflict {
            code: "receipt.no_printer",
            detail: "This register has no network printer: the till prints the receipt itself (format=escpos).".to_owned(),
        });
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    let (job_id, copy) = print::queue(&mut tx, &document, caller.user_id, now).await?;
    if let Some(key) = &key
        && let Some(stored) = idempotency::claim(
            &mut tx,
            "receipt_prints",
            key,
            &hash,
            job_id,
            caller.user_id,
            now,
        )
        .await?
    {
        tx.rollback().await?;
        let mut conn = state.pool().acquire().await?;
        return queued_again(&mut conn, stored.replay_for(&hash)?).await;
    }
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(PrintQueued { job_id, copy })).into_response())
}

/// The answer to a retried print: the job it queued.
async fn queued_again(conn: &mut sqlx::PgConnection, job_id: Uuid) -> Result<Response, ApiError> {
    let job = crate::core::jobs::get(conn, job_id).await?;
    let copy = job
        .and_then(|j| j.payload.get("copy").and_then(Value::as_i64))
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or_default();
    let mut response = (StatusCode::ACCEPTED, Json(PrintQueued { job_id, copy })).into_response();
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

/// A receipt's QR text to check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyReceipt {
    /// The text the QR code holds (`PP1|...`).
    pub code: String,
}

/// Check a receipt's QR code: whether its signature is this instance's and whether the server's
/// record of the document states the same fields. No login needed; the answer names fields,
/// never values.
#[utoipa::path(post, path = "/api/v1/receipts/verify", tag = "receipts", request_body = VerifyReceipt,
    responses(
        (status = 200, description = "The verdict (a bad signature or a mismatch is a verdict, not an error)", body = Verdict),
        (status = 422, description = "Not a receipt code (`validation.failed`, naming what is wrong)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many unauthenticated requests (`rate_limited`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_receipt(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Verdict>, ApiError> {
    let body: VerifyReceipt = from_value(body)?;
    if body.code.len() > 2048 {
        return Err(ApiError::invalid("code", "is longer than any receipt code"));
    }
    let scanned = fiscal::parse(&body.code).map_err(|why| ApiError::invalid("code", why))?;
    let key = verify::instance_key(&state.data_dir().keys());
    let mut conn = state.pool().acquire().await?;
    let verdict = verify::check(&mut conn, &scanned, key.as_deref())
        .await
        .map_err(ApiError::Internal)?;
    Ok(Json(verdict))
}

/// A register's printer as set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrinterSet {
    /// `none` or `network`.
    pub kind: String,
    /// `network`: the printer's host name or IP address.
    pub host: Option<String>,
    /// `network`: its raw TCP port (default 9100).
    pub port: Option<i32>,
    /// 58 or 80 (default 80).
    pub width_mm: Option<i32>,
    /// `cp858` (default) or `utf8`.
    pub encoding: Option<String>,
    /// Print every sale by itself (network printers; default false).
    pub auto_print: Option<bool>,
    /// Open the cash drawer on documents that move cash (default false).
    pub drawer_kick: Option<bool>,
    /// The version being replaced (0 when none was set).
    pub version: i64,
}

/// A register's receipt printer (`kind: none` when none was set).
#[utoipa::path(get, path = "/api/v1/registers/{id}/printer", tag = "receipts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Register id")),
    responses(
        (status = 200, description = "The printer", body = Printer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such register (`register.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_printer(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Printer>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    if !places::register_exists(&mut conn, id).await? {
        return Err(register_not_found(id));
    }
    drop(conn);
    Ok(Json(printer_of(&state, id).await?))
}

fn register_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "register.not_found",
        detail: format!("No register with id {id}."),
    }
}

/// Set a register's receipt printer. `version` must be the current one (409
/// `conflict.version_mismatch`).
#[utoipa::path(put, path = "/api/v1/registers/{id}/printer", tag = "receipts", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Register id")), request_body = PrinterSet,
    responses(
        (status = 200, description = "Set", body = Printer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such register (`register.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put_printer(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Printer>, ApiError> {
    let set: PrinterSet = from_value(body)?;
    let now = state.clock().now();
    let mut errors = Vec::new();
    let network = match set.kind.as_str() {
        "network" => true,
        "none" => false,
        _ => {
            errors.push(FieldError::new("kind", "must be none or network"));
            false
        }
    };
    let host = set.host.map(|h| h.trim().to_owned());
    match (&host, network) {
        (Some(h), true) if !valid_host(h) => errors.push(FieldError::new(
            "host",
            "must be a host name or an IP address (letters, digits, '.', '-', ':')",
        )),
        (None, true) => errors.push(FieldError::new("host", "is required for a network printer")),
        (Some(_), false) => errors.push(FieldError::new("host", "only a network printer has one")),
        _ => {}
    }
    let port = match network {
        true => set.port.or(Some(9100)),
        false => None,
    };
    if port.is_some_and(|p| !(1..=65535).contains(&p)) {
        errors.push(FieldError::new("port", "must be 1 to 65535"));
    }
    let width_mm = set.width_mm.unwrap_or(80);
    if width_mm != 58 && width_mm != 80 {
        errors.push(FieldError::new("width_mm", "must be 58 or 80"));
    }
    let encoding = set.encoding.unwrap_or_else(|| "cp858".to_owned());
    if Encoding::parse(&encoding).is_none() {
        errors.push(FieldError::new("encoding", "must be cp858 or utf8"));
    }
    let auto_print = set.auto_print.unwrap_or(false);
    if auto_print && !network {
        errors.push(FieldError::new(
            "auto_print",
            "needs a network printer (without one the till prints)",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if !places::register_exists(&mut tx, id).await? {
        return Err(register_not_found(id));
    }
    let before = store::printer(&mut tx, id).await?;
    let current = before.as_ref().map_or(0, |p| p.version);
    let printer = Printer {
        register_id: id,
        kind: set.kind,
        host: host.filter(|_| network),
        port,
        width_mm,
        encoding,
        auto_print,
        drawer_kick: set.drawer_kick.unwrap_or(false),
        version: set.version + 1,
        updated_at: now,
    };
    if set.version != current || !store::put_printer(&mut tx, &printer).await? {
        return Err(ApiError::version_mismatch("printer", current, set.version));
    }
    let mut change =
        Change::new(MODULE, "receipt_printer", id, "receipt_printer.set").after(json!(printer));
    if let Some(before) = before {
        change = change.before(json!(before));
    }
    tx.record(change).await?;
    tx.commit().await?;
    Ok(Json(printer))
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}
