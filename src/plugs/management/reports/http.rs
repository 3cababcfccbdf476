//! `GET /api/v1/reports`, `GET /api/v1/reports/{id}`, `GET /api/v1/dashboard`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::dashboard::{self, Dashboard};
use super::render::{self, Run, column_descriptions};
use super::{MODULE, names, params};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, page, page_limit};
use crate::core::reports::{Chart, ChartKind, Column, Param, Report};
use crate::core::settings::Business;
use crate::core::state::AppState;

/// A report the caller may run.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportInfo {
    #[schema(example = "management.sales_by_day")]
    pub id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// The query parameters it takes (besides `format`).
    pub parameters: Vec<&'static str>,
    /// The columns the caller would see (`{name, title, type, total}`).
    #[schema(value_type = Vec<Object>)]
    pub columns: Vec<Value>,
    /// What its PDF draws: `{kind: bars|lines, label, value}`.
    #[schema(value_type = Option<Object>)]
    pub chart: Option<Value>,
    pub formats: [&'static str; 3],
}

/// The reports the caller may run, by id.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportList {
    pub items: Vec<ReportInfo>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// `?limit=&cursor=`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// 1 to 200 (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page (a report id).
    #[param(pattern = "^[a-z][a-z0-9_.]{0,99}$")]
    pub cursor: Option<String>,
}

/// The reports of the enabled modules.
fn all(state: &AppState) -> Vec<&'static Report> {
    state
        .registry()
        .modules()
        .iter()
        .filter(|m| state.modules().is_enabled(m.id()))
        .flat_map(|m| m.reports().iter())
        .collect()
}

fn may_run(caller: &AuthContext, report: &Report) -> bool {
    report.permissions.iter().all(|p| caller.has(p))
}

/// The columns `caller` sees, with their index in a row, and the titles of those hidden.
fn visible(
    caller: &AuthContext,
    columns: &'static [Column],
) -> (Vec<(usize, &'static Column)>, Vec<&'static str>) {
    let mut shown = Vec::new();
    let mut hidden = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        match c.needs {
            Some(p) if !caller.has(p) => hidden.push(c.title),
            _ => shown.push((i, c)),
        }
    }
    (shown, hidden)
}

fn chart_json(chart: Option<Chart>, shown: &[(usize, &'static Column)]) -> Option<Value> {
    let chart = chart?;
    let seen = |name: &str| shown.iter().any(|(_, c)| c.name == name);
    (seen(chart.label) && seen(chart.value)).then(|| {
        json!({
            "kind": match chart.kind { ChartKind::Bars => "bars", ChartKind::Lines => "lines" },
            "label": chart.label,
            "value": chart.value,
        })
    })
}

/// The reports the caller may run (those of enabled modules whose permissions they hold), with
/// their parameters and the columns they would see.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", security(("bearer" = [])), params(ListQuery),
    responses(
        (status = 200, description = "The reports", body = ReportList),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(query): Query<ListQuery>,
) -> Result<Json<ReportList>, ApiError> {
    let limit = page_limit(query.limit, 100, 200)?;
    if let Some(cursor) = &query.cursor {
        let mut chars = cursor.chars();
        let well_formed = cursor.len() <= 100
            && chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !well_formed {
            return Err(ApiError::invalid(
                "cursor",
                "must be a `next_cursor` of this list",
            ));
        }
    }
    let mut runnable: Vec<&'static Report> = all(&state)
        .into_iter()
        .filter(|r| may_run(&caller, r))
        .filter(|r| query.cursor.as_deref().is_none_or(|after| r.id > after))
        .collect();
    runnable.sort_by_key(|r| r.id);
    runnable.truncate(usize::try_from(limit).unwrap_or(0) + 1);
    let (runnable, next_cursor) = page(runnable, limit, |r| r.id.to_owned());
    let items = runnable
        .into_iter()
        .map(|r| {
            let (shown, _) = visible(&caller, r.columns);
            ReportInfo {
                id: r.id,
                title: r.title,
                description: r.description,
                parameters: r
                    .params
                    .iter()
                    .flat_map(|p| p.names().iter().copied())
                    .collect(),
                columns: column_descriptions(&shown),
                chart: chart_json(r.chart, &shown),
                formats: ["json", "csv", "pdf"],
            }
        })
        .collect();
    Ok(Json(ReportList { items, next_cursor }))
}

/// What a report takes (each report takes some of these; `GET /api/v1/reports` says which).
#[derive(Debug, Deserialize, IntoParams)]
#[allow(dead_code)]
pub struct ReportQuery {
    /// `json` (default), `csv` or `pdf`.
    #[param(pattern = "^(json|csv|pdf)$")]
    format: Option<String>,
    /// First business date (YYYY-MM-DD; default: the first of this month).
    from: Option<NaiveDate>,
    /// Last business date, included (default: today).
    to: Option<NaiveDate>,
    branch_id: Option<Uuid>,
    register_id: Option<Uuid>,
    cashier_id: Option<Uuid>,
    /// The category and those below it.
    category_id: Option<Uuid>,
    product_id: Option<Uuid>,
    customer_id: Option<Uuid>,
    #[param(pattern = "^(cash|card|voucher|other)$")]
    method: Option<String>,
    location_id: Option<Uuid>,
    /// Rows of a ranking, 1 to 1000 (default 20).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        code: "report.not_found",
        detail: format!("no report `{id}` (GET /api/v1/reports lists them)"),
    }
}

/// The parameters as applied, for the answer, the PDF and the audit record.
fn applied(
    report: &Report,
    f: &crate::core::reports::Filters,
    query: &HashMap<String, String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in report.params {
        match p {
            Param::Period => {
                out.push(("from".to_owned(), f.from.to_string()));
                out.push(("to".to_owned(), f.to.to_string()));
            }
            Param::Limit => out.push(("limit".to_owned(), f.limit.to_string())),
            other => {
                for name in other.names() {
                    if let Some(v) = query.get(*name) {
                        out.push(((*name).to_owned(), v.clone()));
                    }
                }
            }
        }
    }
    out
}

/// Runs a report: JSON (`rows`, `totals`, the columns and the parameters as applied), CSV or a
/// PDF with a chart. Columns that need a field permission the caller lacks are left out. A CSV
/// or PDF export is audited (`report.export`, with the parameters).
#[utoipa::path(get, path = "/api/v1/reports/{id}", tag = "reports", security(("bearer" = [])),
    params(("id" = String, Path, description = "The report's id"), ReportQuery),
    responses(
        (status = 200, description = "The report as JSON, CSV or PDF", body = Object,
            content((Object = "application/json"), (String = "text/csv"), (Vec<u8> = "application/pdf"))),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such report (`report.not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad or unknown parameters, each named (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn run(
    State(state): State<AppState>,
    caller: AuthContext,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let report = all(&state)
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| not_found(&id))?;
    if let Some(missing) = report.permissions.iter().find(|p| !caller.has(p)) {
        return Err(ApiError::Forbidden((*missing).to_owned()));
    }
    let format = params::format(&query)?;
    let business = Business::cached(&state)
        .await?
        .ok_or(ApiError::SetupRequired)?;
    let now = state.clock().now();
    let sees_costs = caller.has(crate::plugs::management::api::catalog::COST_PRICE_READ);
    let filters = {
        let mut conn = state.pool().acquire().await?;
        params::filters(&mut conn, &business, now, report, &query, sees_costs).await?
    };
    let rows = (report.run)(&state, &filters).await?;
    let (columns, hidden) = visible(&caller, report.columns);
    let names = {
        let mut conn = state.pool().acquire().await?;
        names::of(&mut conn, report.columns, &rows).await?
    };
    let parameters = applied(report, &filters, &query);
    let run = Run {
        report,
        columns,
        hidden,
        rows,
        names,
        parameters,
        business: business.name.clone(),
        currency: business.currency.clone(),
        scale: business.currency_scale,
        generated_at: now,
        generated_by: caller.username.clone(),
        timezone: business.timezone,
    };
    if format == "json" {
        return Ok(Json(render::to_json(&run)).into_response());
    }
    let (content_type, body) = match format {
        "csv" => ("text/csv; charset=utf-8", render::to_csv(&run).into_bytes()),
        _ => ("application/pdf", render::to_pdf(&run)),
    };
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let parameters: serde_json::Map<String, Value> = run
        .parameters
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    tx.record(
        Change::new(MODULE, "report", report.id, "report.export").after(json!({
            "report": report.id,
            "format": format,
            "parameters": parameters,
            "rows": run.rows.len(),
            "hidden_columns": run.hidden,
        })),
    )
    .await?;
    tx.commit().await?;
    let file = format!(
        "{}-{}-{}.{format}",
        report.id.replace('.', "-"),
        filters.from,
        filters.to
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The caller's dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardAnswer {
    /// Each KPI the caller may see: `{id, title, unit, refresh_secs, value, computed_at}`.
    #[schema(value_type = Vec<Object>)]
    pub kpis: Vec<Value>,
}

/// The KPIs the caller may see with their values and when each was computed (what is due is
/// computed first). The `dashboard` WebSocket topic pushes changes.
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "reports", security(("bearer" = [])),
    responses(
        (status = 200, description = "The KPIs", body = DashboardAnswer),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn dashboard(
    State(state): State<AppState>,
    caller: AuthContext,
) -> Result<Json<DashboardAnswer>, ApiError> {
    let board = Dashboard::of(&state);
    board.refresh(&state).await?;
    let values = board.values();
    let kpis = dashboard::kpis(&state)
        .into_iter()
        .filter(|k| caller.has(k.permission))
        .map(|k| dashboard::shown(k, values.get(k.id)))
        .collect();
    Ok(Json(DashboardAnswer { kpis }))
}
