//! `GET` and `PUT /api/v1/registers/{id}/printer`: a register's receipt printer.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::super::MODULE;
use super::super::escpos::Encoding;
use super::super::print::printer_of;
use super::super::store::{self, Printer};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::json::from_value;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::state::AppState;
use crate::plugs::administration::api::places;

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
