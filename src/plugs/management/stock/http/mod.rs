//! `GET /api/v1/stock`, `POST /api/v1/stock/adjustments`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::Problem;
use crate::core::http::{ApiError, ApiJson};
use crate::core::http::{page, page_limit};
use crate::core::state::AppState;
use crate::plugs::management::stock::MODULE;
use crate::plugs::management::stock::rules::{self, StockReason, ValidAdjustment};
use crate::plugs::management::stock::store::{self, NewMovement, StockLevel};

pub mod counts;
pub mod ledger;
pub mod reorder;
pub mod transfers;
use crate::plugs::administration::api::places;
use crate::plugs::management::api::catalog;
use crate::shared::ids::new_id;

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StockQuery {
    pub product_id: Option<Uuid>,
    pub location_id: Option<Uuid>,
    /// 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// A page of stock levels.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockPage {
    pub items: Vec<StockLevel>,
    pub next_cursor: Option<String>,
}

/// A manual change of stock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdjustment {
    pub product_id: Uuid,
    /// Optional when the business has a single location.
    pub location_id: Option<Uuid>,
    /// Signed, three decimals at most: `"24"` received, `"-1"` damaged.
    #[schema(example = "24")]
    pub quantity_delta: String,
    #[schema(value_type = StockReason)]
    pub reason_code: String,
    pub note: Option<String>,
}

/// The adjustment made.
#[derive(Debug, Serialize, ToSchema)]
pub struct Adjustment {
    pub id: Uuid,
    pub product_id: Uuid,
    pub location_id: Uuid,
    #[schema(value_type = String)]
    #[serde(serialize_with = "store::three_decimals")]
    pub quantity_delta: Decimal,
    /// The level after the change.
    #[schema(value_type = String)]
    #[serde(serialize_with = "store::three_decimals")]
    pub quantity: Decimal,
    pub reason_code: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Stock levels, by product and location.
#[utoipa::path(get, path = "/api/v1/stock", tag = "stock", security(("bearer" = [])), params(StockQuery),
    responses(
        (status = 200, description = "A page of stock levels", body = StockPage),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn levels(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<StockQuery>,
) -> Result<Json<StockPage>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let offset = crate::core::http::offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let rows = store::levels(
        &mut conn,
        query.product_id,
        query.location_id,
        offset,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(StockPage { items, next_cursor }))
}

/// Change a product's stock at a location by hand, with a reason (audited).
#[utoipa::path(post, path = "/api/v1/stock/adjustments", tag = "stock", security(("bearer" = [])), request_body = NewAdjustment,
    responses(
        (status = 201, description = "Adjusted", body = Adjustment),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (`validation.failed`) or the product does not track stock (`stock.not_tracked`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn adjust(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(new): ApiJson<NewAdjustment>,
) -> Result<(StatusCode, Json<Adjustment>), ApiError> {
    let ValidAdjustment {
        delta,
        reason,
        note,
    } = rules::check(&new.quantity_delta, &new.reason_code, new.note.as_deref())
        .map_err(ApiError::Validation)?;
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let location_id = match new.location_id {
        Some(id) if places::location_exists(&mut tx, id).await? => id,
        Some(_) => return Err(ApiError::invalid("location_id", "is not a location")),
        None => places::sole_location(&mut tx).await?.ok_or_else(|| {
            ApiError::invalid(
                "location_id",
                "is required when the business has several locations",
            )
        })?,
    };
    match catalog::tracks_stock(&mut tx, new.product_id).await? {
        None => return Err(ApiError::invalid("product_id", "is not a product")),
        Some(false) => {
            return Err(ApiError::Unprocessable {
                code: "stock.not_tracked",
                detail: "This product does not track stock; set `track_stock` on it first."
                    .to_owned(),
            });
        }
        Some(true) => {}
    }
    let before = store::lock_level(&mut tx, new.product_id, location_id).await?;
    let quantity = store::add_to_level(&mut tx, new.product_id, location_id, delta).await?;
    let id = new_id();
    store::insert_movement(
        &mut tx,
        &NewMovement {
            id,
            product_id: new.product_id,
            location_id,
            delta,
            quantity_after: quantity,
            reason_code: reason.as_str(),
            note: note.as_deref(),
            document_id: None,
            user_id: caller.user_id,
            at: now,
        },
    )
    .await?;
    tx.record(
        Change::new(
            MODULE,
            "stock_level",
            format!("{}:{location_id}", new.product_id),
            "stock.adjust",
        )
        .before(json!({"quantity": before.unwrap_or_default().to_string()}))
        .after(json!({
            "quantity": quantity.to_string(), "quantity_delta": delta.to_string(),
            "reason_code": reason.as_str(), "note": note, "movement_id": id,
        })),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Adjustment {
            id,
            product_id: new.product_id,
            location_id,
            quantity_delta: delta,
            quantity,
            reason_code: reason.as_str().to_owned(),
            note,
            created_at: now,
        }),
    ))
}
