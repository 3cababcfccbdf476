//! `GET /api/v1/audit/verify`, `POST/GET /api/v1/audit/checkpoints`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use axum::http::StatusCode;

use crate::core::audit::checkpoint::{self, Checkpoint};
use crate::core::audit::query::{
    AuditExportParams, AuditFilter, AuditListParams, AuditPage, EXPORT_LIMIT, Redaction, Row,
    csv_report, fetch, pdf_report,
};
use crate::core::audit::{Actor, AuditedTx, Change, chain, personal, verify};
use crate::core::auth::context::AuthContext;
use crate::core::http::ApiError;
use crate::core::http::problem::Problem;
use crate::core::http::{Page, PageQuery, keyset_page, page, page_limit};
use crate::core::security::events::{self, EventKind, SecurityEvent};
use crate::core::state::AppState;

/// Recompute the audit chain and report the first broken link.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 200, description = "The verification report (`ok` false when the chain is broken)", body = verify::Report),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_handler(
    State(state): State<AppState>,
    caller: AuthContext,
) -> Result<Json<verify::Report>, ApiError> {
    let report =
        verify::verify_instance(state.pool(), &state.data_dir().keys(), Vec::new()).await?;
    if !report.ok {
        let mut conn = state.pool().acquire().await?;
        events::record(
            &mut conn,
            SecurityEvent {
                kind: EventKind::AuditVerificationFailed,
                user_id: Some(caller.user_id),
                username: Some(&caller.username),
                origin: &caller.origin,
                details: json!({"first_bad_seq": report.first_bad_seq, "reason": report.reason}),
            },
        )
        .await?;
    }
    Ok(Json(report))
}

/// Sign the current chain head. Save the returned JSON outside this machine: `plugpos audit
/// verify --checkpoint FILE` then detects a truncated or rewritten chain.
#[utoipa::path(post, path = "/api/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 201, description = "The signed checkpoint", body = Checkpoint),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_checkpoint(
    State(state): State<AppState>,
    _caller: AuthContext,
) -> Result<(StatusCode, Json<Checkpoint>), ApiError> {
    chain::chain_pending(state.pool()).await?;
    let key = checkpoint::load_or_create_key(&state.data_dir().keys())?;
    let created = checkpoint::create(state.pool(), &key, state.clock().now()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Every signed checkpoint, oldest first.
#[utoipa::path(get, path = "/api/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of checkpoints, oldest first", body = Page<Checkpoint>),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list_checkpoints(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PageQuery>,
) -> Result<Json<Page<Checkpoint>>, ApiError> {
    let all = checkpoint::list(state.pool()).await?;
    Ok(Json(keyset_page(
        all,
        |c| format!("{:020}", c.seq),
        &query,
    )?))
}

/// Query the audit log, in chain order.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditListParams),
    responses(
        (status = 200, description = "A page of records", body = AuditPage),
        (status = 400, description = "Unparseable filter (`request.bad`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = page_limit(filter.limit, 100, 500)?;
    let after = match &filter.cursor {
        Some(c) => c
            .parse::<i64>()
            .map_err(|_| ApiError::invalid("cursor", "is not a cursor from this list"))?,
        None => 0,
    };
    chain::chain_pending(state.pool()).await?;
    let mut rows = fetch(state.pool(), &filter, after, limit + 1).await?;
    let redaction = redaction(&state, &caller);
    rows.iter_mut().for_each(|row| redaction.apply(row));
    open_personal(&state, &mut rows).await?;
    let (rows, next_cursor) = page(rows, limit, |r| r.seq.to_string());
    Ok(Json(AuditPage {
        items: rows.into_iter().map(Row::entry).collect(),
        next_cursor,
    }))
}

/// Opens the personal values the records hold sealed (those the reader may see: a protected
/// field they may not see is gone already); an erased subject's read as `"[erased]"`.
async fn open_personal(state: &AppState, rows: &mut [Row]) -> Result<(), ApiError> {
    let mut texts: Vec<&mut Option<String>> = rows
        .iter_mut()
        .flat_map(|r| [&mut r.before_json, &mut r.after_json])
        .collect();
    let mut conn = state.pool().acquire().await?;
    personal::open_all(&mut conn, &mut texts).await?;
    Ok(())
}

/// What `caller` may not see of the records: the modules' protected fields whose permission
/// they lack.
fn redaction(state: &AppState, caller: &AuthContext) -> Redaction {
    let hidden = state
        .registry()
        .modules()
        .iter()
        .flat_map(|m| m.protected_fields())
        .filter(|f| !caller.has(f.permission))
        .copied()
        .collect();
    Redaction::new(hidden)
}

/// What an export is written as (`?format=`; the audit and security records name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum ExportFormat {
    Csv,
    Pdf,
}

/// Export the (filtered) audit log as CSV or as a PDF report. The export is itself audited.
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit", security(("bearer" = [])), params(AuditExportParams),
    responses(
        (status = 200, description = "CSV (a header row, one row per record in chain order) or a PDF report",
            content((String = "text/csv"), (Vec<u8> = "application/pdf"))),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unsupported format or too many records (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn export(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ApiError> {
    let format = match filter.format.as_deref() {
        Some("csv") | None => ExportFormat::Csv,
        Some("pdf") => ExportFormat::Pdf,
        Some(other) => {
            return Err(ApiError::invalid(
                "format",
                format!("`{other}` is not supported; use csv or pdf"),
            ));
        }
    };
    chain::chain_pending(state.pool()).await?;
    let mut rows = fetch(state.pool(), &filter, 0, EXPORT_LIMIT + 1).await?;
    let redaction = redaction(&state, &caller);
    rows.iter_mut().for_each(|row| redaction.apply(row));
    open_personal(&state, &mut rows).await?;
    if rows.len() as i64 > EXPORT_LIMIT {
        return Err(ApiError::invalid(
            "from",
            format!("more than {EXPORT_LIMIT} records match; narrow the period"),
        ));
    }
    let count = rows.len();
    let (body, content_type, file_name) = match format {
        ExportFormat::Pdf => (
            pdf_report(&state, &caller.username, &filter, &rows).await?,
            "application/pdf",
            "audit-log.pdf",
        ),
        ExportFormat::Csv => (
            csv_report(rows)?,
            "text/csv; charset=utf-8",
            "audit-log.csv",
        ),
    };
    // Exporting the audit log is itself a sensitive, audited act.
    let filters = json!({
        "from": filter.from, "to": filter.to, "user_id": filter.user_id, "entity": filter.entity,
        "entity_id": filter.entity_id, "action": filter.action, "module": filter.module,
    });
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), state.clock().now()).await?;
    tx.record(
        Change::new("core.audit", "audit_log", "export", "audit_log.export")
            .after(json!({"format": format, "records": count, "filters": filters})),
    )
    .await?;
    events::record(
        &mut tx,
        SecurityEvent {
            kind: EventKind::SensitiveExport,
            user_id: Some(caller.user_id),
            username: Some(&caller.username),
            origin: &caller.origin,
            details: json!({"what": "audit_log", "format": format, "records": count}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The audit log: query, export, verify, checkpoints, each with its access rule (assembled by the server with the other capabilities').
pub fn routes() -> utoipa_axum::router::OpenApiRouter<crate::core::state::AppState> {
    use crate::core::auth::access::Access::Permission;
    use crate::core::auth::access::declare;
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(declare(
            Permission("administration.audit.verify"),
            routes!(verify_handler),
        ))
        .routes(declare(
            Permission("administration.audit.read"),
            routes!(list),
        ))
        .routes(declare(
            Permission("administration.audit.export"),
            routes!(export),
        ))
        .routes(declare(
            Permission("administration.audit.verify"),
            routes!(create_checkpoint),
        ))
        .routes(declare(
            Permission("administration.audit.read"),
            routes!(list_checkpoints),
        ))
}
