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
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson};
use crate::core::state::AppState;
use crate::shared::ids::new_id;
use crate::shared::money::{QUANTITY_SCALE, parse_signed};

const MODULE: &str = "management.stock";

/// Why stock changed by hand (`sale` is reserved for sales).
pub const REASON_CODES: &[&str] = &[
    "received",
    "count",
    "damaged",
    "expired",
    "theft",
    "internal_use",
    "returned_to_supplier",
    "correction",
];

/// The quantity of one product at one location.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct StockLevel {
    pub product_id: Uuid,
    pub location_id: Uuid,
    /// Quantity on hand (three decimals); may be negative when more was sold than counted.
    #[schema(value_type = String, example = "12.000")]
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// Filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StockQuery {
    pub product_id: Option<Uuid>,
    pub location_id: Option<Uuid>,
    /// 1 to 500 (default 100).
    pub limit: Option<i64>,
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
    /// One of `received`, `count`, `damaged`, `expired`, `theft`, `internal_use`,
    /// `returned_to_supplier`, `correction`.
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
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity_delta: Decimal,
    /// The level after the change.
    #[schema(value_type = String)]
    #[serde(with = "rust_decimal::serde::str")]
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
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 500"));
    }
    let offset = crate::core::http::offset_cursor(query.cursor.as_deref())?;
    let mut items: Vec<StockLevel> = sqlx::query_as(
        "SELECT product_id, location_id, quantity, updated_at, version FROM stock_levels \
         WHERE ($1::uuid IS NULL OR product_id = $1) AND ($2::uuid IS NULL OR location_id = $2) \
         ORDER BY product_id, location_id OFFSET $3 LIMIT $4",
    )
    .bind(query.product_id)
    .bind(query.location_id)
    .bind(offset)
    .bind(limit + 1)
    .fetch_all(state.pool())
    .await?;
    let next_cursor = (items.len() as i64 > limit).then(|| {
        items.truncate(usize::try_from(limit).unwrap_or(0));
        (offset + limit).to_string()
    });
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
    let mut errors = Vec::new();
    let delta = parse_signed(&new.quantity_delta, QUANTITY_SCALE)
        .map_err(|why| errors.push(FieldError::new("quantity_delta", why)))
        .ok();
    if delta.is_some_and(|d| d.is_zero()) {
        errors.push(FieldError::new("quantity_delta", "must not be zero"));
    }
    if delta.is_some_and(|d| d.abs() >= Decimal::from(100_000_000_000i64)) {
        errors.push(FieldError::new("quantity_delta", "is too large"));
    }
    if !REASON_CODES.contains(&new.reason_code.as_str()) {
        errors.push(FieldError::new(
            "reason_code",
            format!("must be one of {}", REASON_CODES.join(", ")),
        ));
    }
    let note = new
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
        errors.push(FieldError::new("note", "must be at most 500 characters"));
    }
    let (Some(delta), true) = (delta, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    let location_id = match new.location_id {
        Some(id) => {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM locations WHERE id = $1 AND deleted_at IS NULL)",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if !exists {
                return Err(ApiError::invalid("location_id", "is not a location"));
            }
            id
        }
        None => {
            let all: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM locations WHERE deleted_at IS NULL ORDER BY id LIMIT 2",
            )
            .fetch_all(&mut *tx)
            .await?;
            match all.as_slice() {
                [only] => *only,
                _ => {
                    return Err(ApiError::invalid(
                        "location_id",
                        "is required when the business has several locations",
                    ));
                }
            }
        }
    };
    let tracked: Option<bool> = sqlx::query_scalar(
        "SELECT track_stock FROM products WHERE id = $1 AND archived_at IS NULL",
    )
    .bind(new.product_id)
    .fetch_optional(&mut *tx)
    .await?;
    match tracked {
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
    let before: Option<Decimal> = sqlx::query_scalar(
        "SELECT quantity FROM stock_levels WHERE product_id = $1 AND location_id = $2 FOR UPDATE",
    )
    .bind(new.product_id)
    .bind(location_id)
    .fetch_optional(&mut *tx)
    .await?;
    let quantity: Decimal = sqlx::query_scalar(
        "INSERT INTO stock_levels AS l (product_id, location_id, quantity) VALUES ($1, $2, $3) \
         ON CONFLICT (product_id, location_id) DO UPDATE \
           SET quantity = l.quantity + EXCLUDED.quantity, version = l.version + 1, updated_at = now() \
         RETURNING l.quantity",
    )
    .bind(new.product_id)
    .bind(location_id)
    .bind(delta)
    .fetch_one(&mut *tx)
    .await?;
    let id = new_id();
    sqlx::query(
        "INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, note, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(new.product_id)
    .bind(location_id)
    .bind(delta)
    .bind(quantity)
    .bind(&new.reason_code)
    .bind(&note)
    .bind(caller.user_id)
    .bind(now)
    .execute(&mut *tx)
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
            "reason_code": new.reason_code, "note": note, "movement_id": id,
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
            reason_code: new.reason_code,
            note,
            created_at: now,
        }),
    ))
}
