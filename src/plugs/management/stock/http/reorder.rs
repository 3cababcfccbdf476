//! `PUT /api/v1/stock/reorder-points`, `GET /api/v1/stock/low`.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::auth::context::AuthContext;
use crate::core::http::problem::{FieldError, Problem};
use crate::core::http::{ApiError, ApiJson, Page, offset_cursor, page, page_limit};
use crate::core::state::AppState;
use crate::plugs::administration::api::places;
use crate::plugs::management::api::catalog;
use crate::plugs::management::stock::MODULE;
use crate::plugs::management::stock::store::reorder::{self, ReorderPoint};
use crate::shared::money::Quantity;

/// A product's reorder point at a location (`null` values remove it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReorderPoint {
    pub product_id: Uuid,
    pub location_id: Uuid,
    /// Below this the product is low; `null`: no reorder point.
    #[schema(example = "5")]
    pub min_quantity: Option<String>,
    /// How much to order; needs `min_quantity`.
    #[schema(example = "24")]
    pub reorder_quantity: Option<String>,
    /// The reorder point's version as read (0 when it has none).
    pub version: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct LowQuery {
    pub location_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// Set (or remove) a product's reorder point at a location. When a change takes the level below
/// the minimum, `stock.low` is published on the `stock` topic.
#[utoipa::path(put, path = "/api/v1/stock/reorder-points", tag = "stock", security(("bearer" = [])), request_body = NewReorderPoint,
    responses(
        (status = 200, description = "The reorder point", body = ReorderPoint),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A stale version (`conflict.version_mismatch`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, a product that does not track stock (`validation.failed`, `stock.not_tracked`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set(
    State(state): State<AppState>,
    caller: AuthContext,
    ApiJson(new): ApiJson<NewReorderPoint>,
) -> Result<Json<ReorderPoint>, ApiError> {
    let mut errors = Vec::new();
    let mut quantity = |field: &str, text: &Option<String>, positive: bool| match text
        .as_deref()
        .map(Quantity::parse)
    {
        None => None,
        Some(Ok(q)) if positive && q.value().is_zero() => {
            errors.push(FieldError::new(field, "must be more than zero"));
            None
        }
        Some(Ok(q)) => Some(q.value()),
        Some(Err(e)) => {
            errors.push(FieldError::new(field, e));
            None
        }
    };
    let min = quantity("min_quantity", &new.min_quantity, false);
    let reorder = quantity("reorder_quantity", &new.reorder_quantity, true);
    if new.reorder_quantity.is_some() && new.min_quantity.is_none() {
        errors.push(FieldError::new("reorder_quantity", "needs min_quantity"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::user(&caller), now).await?;
    if !places::location_exists(&mut tx, new.location_id).await? {
        return Err(ApiError::invalid("location_id", "is not a location"));
    }
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
    let before = reorder::lock(&mut tx, new.product_id, new.location_id).await?;
    let current = before.as_ref().map_or(0, |b| b.version);
    if current != new.version {
        return Err(ApiError::version_mismatch(
            "reorder point",
            current,
            new.version,
        ));
    }
    let Some(after) = reorder::set(
        &mut tx,
        new.product_id,
        new.location_id,
        min,
        reorder,
        new.version,
    )
    .await?
    else {
        // Another change set it first (two first settings at once).
        return Err(ApiError::version_mismatch(
            "reorder point",
            current + 1,
            new.version,
        ));
    };
    tx.record(
        Change::new(MODULE, "reorder_point", format!("{}:{}", new.product_id, new.location_id), "stock.reorder_point")
            .before(json!({"min_quantity": before.as_ref().and_then(|b| b.min_quantity.clone()),
                           "reorder_quantity": before.as_ref().and_then(|b| b.reorder_quantity.clone())}))
            .after(json!({"min_quantity": after.min_quantity, "reorder_quantity": after.reorder_quantity})),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(after))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct PointQuery {
    pub product_id: Option<Uuid>,
    pub location_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    #[param(pattern = "^[0-9]{1,7}$")]
    pub cursor: Option<String>,
}

/// The reorder points set (with their versions, for `PUT`); a product with none has version 0.
#[utoipa::path(get, path = "/api/v1/stock/reorder-points", tag = "stock", security(("bearer" = [])), params(PointQuery),
    responses(
        (status = 200, description = "A page of reorder points", body = Page<ReorderPoint>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn points(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<PointQuery>,
) -> Result<Json<Page<ReorderPoint>>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let rows = reorder::points(
        &mut conn,
        query.product_id,
        query.location_id,
        offset,
        limit + 1,
    )
    .await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}

/// Products below their minimum, with what to reorder.
#[utoipa::path(get, path = "/api/v1/stock/low", tag = "stock", security(("bearer" = [])), params(LowQuery),
    responses(
        (status = 200, description = "A page of low levels", body = Page<ReorderPoint>),
        (status = 403, description = "Missing permission (`rbac.forbidden`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor (`validation.failed`)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn low(
    State(state): State<AppState>,
    _caller: AuthContext,
    Query(query): Query<LowQuery>,
) -> Result<Json<Page<ReorderPoint>>, ApiError> {
    let limit = page_limit(query.limit, 100, 500)?;
    let offset = offset_cursor(query.cursor.as_deref())?;
    let mut conn = state.pool().acquire().await?;
    let rows = reorder::low(&mut conn, query.location_id, offset, limit + 1).await?;
    let (items, next_cursor) = page(rows, limit, |_| (offset + limit).to_string());
    Ok(Json(Page { items, next_cursor }))
}
