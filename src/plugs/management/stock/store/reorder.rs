//! Reorder points (columns of `stock_levels`) and the levels below them.

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::three_decimals;
use crate::core::audit::AuditedTx;

/// A level with its reorder point.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ReorderPoint {
    pub product_id: Uuid,
    pub location_id: Uuid,
    #[schema(value_type = String, example = "3.000")]
    #[serde(serialize_with = "three_decimals")]
    pub quantity: Decimal,
    /// Below this the product is low (`stock.low`).
    #[schema(value_type = Option<String>, example = "5.000")]
    pub min_quantity: Option<String>,
    /// How much to order when it is.
    #[schema(value_type = Option<String>, example = "24.000")]
    pub reorder_quantity: Option<String>,
    /// The reorder point's version (0 before one was set).
    pub version: i64,
}

const COLUMNS: &str = "product_id, location_id, quantity, min_quantity::text AS min_quantity, \
     reorder_quantity::text AS reorder_quantity, reorder_version AS version";

/// The reorder point of `product_id` at `location_id`, locked (`None`: no level row yet).
pub async fn lock(
    conn: &mut PgConnection,
    product_id: Uuid,
    location_id: Uuid,
) -> Result<Option<ReorderPoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM stock_levels WHERE product_id = $1 AND location_id = $2 FOR UPDATE"
    )))
    .bind(product_id)
    .bind(location_id)
    .fetch_optional(conn)
    .await
}

/// Sets the reorder point if its version is still `expected` (creating the level at zero when
/// there is none) and bumps the version; `None` when another change came first.
pub async fn set(
    tx: &mut AuditedTx,
    product_id: Uuid,
    location_id: Uuid,
    min_quantity: Option<Decimal>,
    reorder_quantity: Option<Decimal>,
    expected: i64,
) -> Result<Option<ReorderPoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO stock_levels AS l (product_id, location_id, quantity, min_quantity, reorder_quantity, reorder_version) \
         SELECT $1, $2, 0, $3, $4, 1 WHERE $5 = 0 \
         ON CONFLICT (product_id, location_id) DO UPDATE SET min_quantity = EXCLUDED.min_quantity, \
             reorder_quantity = EXCLUDED.reorder_quantity, reorder_version = l.reorder_version + 1 \
         WHERE l.reorder_version = $5 \
         RETURNING {COLUMNS}"
    )))
    .bind(product_id)
    .bind(location_id)
    .bind(min_quantity)
    .bind(reorder_quantity)
    .bind(expected)
    .fetch_optional(&mut **tx)
    .await
}

/// The reorder points set, optionally of one product or location.
pub async fn points(
    conn: &mut PgConnection,
    product_id: Option<Uuid>,
    location_id: Option<Uuid>,
    offset: i64,
    limit: i64,
) -> Result<Vec<ReorderPoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM stock_levels WHERE reorder_version > 0 \
         AND ($1::uuid IS NULL OR product_id = $1) AND ($2::uuid IS NULL OR location_id = $2) \
         ORDER BY product_id, location_id OFFSET $3 LIMIT $4"
    )))
    .bind(product_id)
    .bind(location_id)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Levels below their minimum, optionally at one location.
pub async fn low(
    conn: &mut PgConnection,
    location_id: Option<Uuid>,
    offset: i64,
    limit: i64,
) -> Result<Vec<ReorderPoint>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM stock_levels WHERE min_quantity IS NOT NULL AND quantity < min_quantity \
         AND ($1::uuid IS NULL OR location_id = $1) ORDER BY location_id, product_id OFFSET $2 LIMIT $3"
    )))
    .bind(location_id)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}
