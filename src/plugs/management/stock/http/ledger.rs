//! `GET /api/v1/stock/movements`: the stock ledger, with the level after each movement.

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::core::auth::context::AuthContext;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, Page, offset_cursor, page, page_limit};
use crate::core::state::AppState;
use crate::plugs::management::stock::store::ledger::{self, LedgerFilter, Movement};

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LedgerQuery {
    pub product_id: Option<Uuid>,
    pub location_id: Option<Uuid>,
    /// From this time (inclusive, RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Until this time (exclusive).
    pub to: Option<DateTime<Utc>>,
    /// One reason: `sale`, `received`, `count`, `transfer_out`, `transfer_in`...
    #[param(pattern = "^[a-z][a-z0-9_]{0,63}$")]
    pub reason: Option<String>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// The stock ledger: every change of a level (sales' lines, adjustments, returns, transfers,
/// counts) in the order it happened, with the level after it. A level is always the sum of its
/// movements.
#[utoipa::path(get, path = "/api/v1/stock/movements", tag = "stock", security(("bearer" = [])), params(LedgerQuery),
    responses(
        (status = 200, description = "A page of movements, oldest first", body = Page<Movement>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad filter, limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn movements(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<LedgerQuery>,
) -> Result<Json<Page<Movement>>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    if query.from.zip(query.to).is_some_and(|(from, to)| from > to) {
        return Err(ApiError::invalid("to", "must not be before from"));
    }
    if let Some(reason) = &query.reason
        && !(reason.len() <= 64
            && reason.starts_with(|c: char| c.is_ascii_lowercase())
            && reason
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
    {
        return Err(ApiError::invalid("reason", "is not a reason code"));
    }
    let filter = LedgerFilter {
        product_id: query.product_id,
        location_id: query.location_id,
        from: query.from,
        to: query.to,
        reason: query.reason.as_deref(),
    };
    let mut conn = state.pool().acquire().await?;
    let rows = ledger::movements(&mut conn, &filter, offset, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}
