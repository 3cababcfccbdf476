//! `POST /api/v1/sales` (idempotent), `GET /api/v1/sales/{id}`, `GET /api/v1/sales`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::READ;
use super::prepare::{NewSale, Prepared, prepare};
use super::record::Written;
use super::store::{self, Sale, SaleFilter};
use super::writer::SaleWriter;
use crate::core::auth::context::AuthContext;
use crate::core::db::changes::KeepsCaches;
use crate::core::http::json::from_value;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson};
use crate::core::http::{page, page_limit, time_cursor, time_cursor_of};
use crate::core::idempotency;
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::operations::api::sales as sales_api;
use crate::shared::money::show;

fn created(sale: Sale, replayed: bool) -> Response {
    let location = format!("/api/v1/sales/{}", sale.id);
    let mut response = (StatusCode::CREATED, Json(sale)).into_response();
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    if replayed {
        idempotency::mark_replayed(&mut response);
    }
    response
}

async fn replay(state: &AppState, id: Uuid) -> Result<Response, ApiError> {
    let scale = Business::cached(state)
        .await?
        .ok_or(ApiError::SetupRequired)?
        .currency_scale;
    let mut conn = state.pool().acquire().await?;
    let sale = store::load(&mut conn, id, scale)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("idempotent sale {id} vanished")))?;
    let corrections = sales_api::corrections(state, &mut conn, id, scale).await?;
    Ok(created(sale.corrected(corrections), true))
}

/// Record a completed sale. Send an `Idempotency-Key`: a retry returns the first response with
/// `Idempotent-Replayed: true`, and no sale is ever recorded twice.
#[utoipa::path(post, path = "/api/v1/sales", tag = "sales", security(("bearer" = [])), request_body = NewSale,
    params(("Idempotency-Key" = String, Header, description = "Unique per sale attempt (a UUID); required: 1 to 255 visible ASCII characters", pattern = "^[!-~]{1,255}$")),
    responses(
        (status = 201, description = "Recorded (or replayed, with `Idempotent-Replayed: true`)", body = Sale),
        (status = 400, description = "No or bad Idempotency-Key (`idempotency.key_required`, `idempotency.key_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing permission (`rbac.forbidden`), e.g. `operations.sales.price_override`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "No open cash session on the register (`cash.no_open_session`), a client id used by another caller (`sale.id_conflict`), or, with the switch `sales.allow_negative_stock` off, not enough stock (`stock.insufficient`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`), payments short (`payment.insufficient`) or non-cash over the total (`payment.overpaid`), key used with another body (`idempotency.key_reused`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: AuthContext,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let mut response = sell(&state, &caller, &headers, body).await.into_response();
    // Selling writes no table that is cached (settings, registers, sessions, products).
    response.extensions_mut().insert(KeepsCaches);
    response
}

async fn sell(
    state: &AppState,
    caller: &AuthContext,
    headers: &HeaderMap,
    body: Value,
) -> Result<Response, ApiError> {
    let key = idempotency::key(headers)?;
    let hash = idempotency::request_hash(&body);
    let new: NewSale = from_value(body)?;
    // A key is the caller's at the register: another cashier's same key is another sale.
    let key = idempotency::scoped(&format!("{}/{}", caller.user_id, new.register_id), &key);
    let prepared = prepare(state, caller, new, key, hash).await?;
    let id = match prepared {
        Prepared::Replay(id) => id,
        Prepared::Sale(sale) => match SaleWriter::of(state).write(sale).await? {
            Written::Recorded(sale) => {
                // A discounted sale is looked at for suspicious patterns (after it committed:
                // a failed queueing costs the hourly sweep's delay, never the sale).
                if sale
                    .discount_total
                    .parse::<rust_decimal::Decimal>()
                    .is_ok_and(|d| !d.is_zero())
                {
                    review_discount(state, sale.cashier_id, sale.created_at).await;
                }
                crate::plugs::operations::api::sales::after_sale(state, sale.id, sale.register_id);
                return Ok(created(*sale, false));
            }
            Written::Replay(id) => id,
        },
    };
    replay(state, id).await
}

/// Queues the review of a discounted sale's cashier (see `administration.incidents`).
async fn review_discount(state: &AppState, cashier: Uuid, at: DateTime<Utc>) {
    let queued = async {
        let mut conn = state.pool().acquire().await?;
        crate::plugs::operations::api::cash::review_later(&mut conn, cashier, at).await
    };
    if let Err(e) = queued.await {
        tracing::warn!(error = %e, "cannot queue the review of a discounted sale");
    }
}

/// One sale.
#[utoipa::path(get, path = "/api/v1/sales/{id}", tag = "sales", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Sale id")),
    responses(
        (status = 200, description = "The sale", body = Sale),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such sale (`sale.not_found`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    _caller: AuthContext,
    Path(id): Path<Uuid>,
) -> Result<Json<Sale>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let scale = Business::load(&mut conn)
        .await?
        .ok_or(ApiError::SetupRequired)?
        .currency_scale;
    let sale = store::load(&mut conn, id, scale)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            code: "sale.not_found",
            detail: format!("No sale with id {id}."),
        })?;
    let corrections = sales_api::corrections(&state, &mut conn, id, scale).await?;
    Ok(Json(sale.corrected(corrections)))
}

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct SaleQuery {
    /// Sales at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Sales before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    pub register_id: Option<Uuid>,
    pub cashier_id: Option<Uuid>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9]{1,18}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

/// A sale in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct SaleSummary {
    pub id: Uuid,
    pub receipt_number: String,
    pub status: String,
    pub register_id: Uuid,
    pub cashier_id: Uuid,
    pub cash_session_id: Uuid,
    #[schema(value_type = String)]
    pub total: String,
    pub created_at: DateTime<Utc>,
}

/// A page of sales, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SalePage {
    pub items: Vec<SaleSummary>,
    pub next_cursor: Option<String>,
}

/// Sales, newest first, filtered by time, register and cashier.
#[utoipa::path(get, path = "/api/v1/sales", tag = "sales", security(("bearer" = [])), params(SaleQuery),
    responses(
        (status = 200, description = "A page of sales", body = SalePage),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthContext,
    Query(query): Query<SaleQuery>,
) -> Result<Json<SalePage>, ApiError> {
    debug_assert!(caller.has(READ));
    let limit = page_limit(query.limit, 50, 200)?;
    let after = time_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let scale = Business::load(&mut conn)
        .await?
        .ok_or(ApiError::SetupRequired)?
        .currency_scale;
    let filter = SaleFilter {
        from: query.from,
        to: query.to,
        register_id: query.register_id,
        cashier_id: query.cashier_id,
    };
    let rows = store::summaries(&mut conn, &filter, after, limit + 1).await?;
    let items: Vec<SaleSummary> = rows
        .into_iter()
        .map(|r| SaleSummary {
            id: r.id,
            receipt_number: r.receipt_number,
            status: r.status,
            register_id: r.register_id,
            cashier_id: r.cashier_id,
            cash_session_id: r.cash_session_id,
            total: show(r.total, scale),
            created_at: r.created_at,
        })
        .collect();
    let (items, next_cursor) = page(items, limit, |s| time_cursor_of(s.created_at, s.id));
    Ok(Json(SalePage { items, next_cursor }))
}
