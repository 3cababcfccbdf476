//! `GET /api/v1/sales/{id}/receipt` and `/returns/{id}/receipt` (returns and voids) and `POST
//! .../print`; `verify.rs`: `POST /api/v1/receipts/verify`; `printers.rs`: a register's printer
//! (`GET`/`PUT /api/v1/registers/{id}/printer`).

pub mod printers;
pub mod verify;

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
use super::store::{self, Render};
use super::text::{self, columns};
use super::{MODULE, pdf};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::ApiError;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::idempotency;
use crate::core::state::AppState;
use crate::plugs::management::api::customers;

/// How to render.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ReceiptQuery {
    /// `json` (default), `text`, `escpos` or `pdf`.
    #[param(pattern = "^(json|text|escpos|pdf)$")]
    pub format: Option<String>,
    /// Paper width in mm, `58` (32 columns) or `80` (48 columns); default: the register
    /// printer's, else 80.
    #[param(pattern = "^(58|80)$")]
    pub width: Option<String>,
    /// PDF only (ignored otherwise): `receipt` (A6, default) or `invoice` (A4).
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
    let width = match query.width.as_deref() {
        None => None,
        Some("58") => Some(58),
        Some("80") => Some(80),
        Some(_) => {
            errors.push(FieldError::new("width", "must be 58 or 80 (mm)"));
            None
        }
    };
    match format {
        Some(f) if errors.is_empty() => Ok((f, width)),
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
    let receipt = issue::receipt(state, &mut tx, &business, &document, &place, copy).await?;
    // The invoice's customer is read as it is now (an erased one prints as such), never stored,
    // and printed only for those who may read customers (personal data).
    let customer = match (&format, document.customer_id()) {
        (Format::Pdf { invoice: true }, Some(id)) if caller.has(customers::READ) => {
            customers::for_invoice(&mut tx, id).await?
        }
        _ => None,
    };
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
                    &text::invoice(&receipt, customer.as_ref(), pdf::A4.columns()),
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
        (status = 400, description = "A malformed Idempotency-Key (`idempotency.key_invalid`)", body = Problem, content_type = "application/problem+json"),
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
        (status = 400, description = "A malformed Idempotency-Key (`idempotency.key_invalid`)", body = Problem, content_type = "application/problem+json"),
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
    let place = issue::audit_place(state, &document).await?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(caller), now).await?;
    let (job_id, copy) = print::queue(
        state,
        &mut tx,
        &business,
        &document,
        &place,
        caller.user_id,
        now,
    )
    .await?;
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
