//! The stock module's SQL: `stock_levels` and `stock_movements` (its tables; the sale's part is
//! in `take.rs`). Writes take the audited transaction, so none can commit without its record.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

pub mod counts;
pub mod ledger;
pub mod reorder;
pub mod transfers;

/// A quantity as the API shows it: a string with three decimals, also for zero (which the
/// database driver hands over without its scale).
pub fn three_decimals<S: serde::Serializer>(q: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    let mut shown = *q;
    shown.rescale(3);
    serializer.serialize_str(&shown.to_string())
}

/// The quantity of one product at one location.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct StockLevel {
    pub product_id: Uuid,
    pub location_id: Uuid,
    /// Quantity on hand (three decimals); may be negative when more was sold than counted.
    #[schema(value_type = String, example = "12.000")]
    #[serde(serialize_with = "three_decimals")]
    pub quantity: Decimal,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// Up to `limit` levels after the first `offset`, by product and location, optionally of one
/// product or location.
pub async fn levels(
    conn: &mut PgConnection,
    product_id: Option<Uuid>,
    location_id: Option<Uuid>,
    offset: i64,
    limit: i64,
) -> Result<Vec<StockLevel>, sqlx::Error> {
    sqlx::query_as(
        "SELECT product_id, location_id, quantity, updated_at, version FROM stock_levels \
         WHERE ($1::uuid IS NULL OR product_id = $1) AND ($2::uuid IS NULL OR location_id = $2) \
         ORDER BY product_id, location_id OFFSET $3 LIMIT $4",
    )
    .bind(product_id)
    .bind(location_id)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The level of `product_id` at `location_id`, locked until the transaction ends (`None`: no
/// level yet, which is zero).
pub async fn lock_level(
    conn: &mut PgConnection,
    product_id: Uuid,
    location_id: Uuid,
) -> Result<Option<Decimal>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT quantity FROM stock_levels WHERE product_id = $1 AND location_id = $2 FOR UPDATE",
    )
    .bind(product_id)
    .bind(location_id)
    .fetch_optional(conn)
    .await
}

/// Adds `delta` to the level (creating it) and answers the level after.
pub async fn add_to_level(
    tx: &mut AuditedTx,
    product_id: Uuid,
    location_id: Uuid,
    delta: Decimal,
) -> Result<Decimal, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO stock_levels AS l (product_id, location_id, quantity) VALUES ($1, $2, $3) \
         ON CONFLICT (product_id, location_id) DO UPDATE \
           SET quantity = l.quantity + EXCLUDED.quantity, version = l.version + 1, updated_at = now() \
         RETURNING l.quantity",
    )
    .bind(product_id)
    .bind(location_id)
    .bind(delta)
    .fetch_one(&mut **tx)
    .await
}

/// A row of the ledger's own table: a change of stock that is not a sale's line.
#[derive(Debug)]
pub struct NewMovement<'a> {
    pub id: Uuid,
    pub product_id: Uuid,
    pub location_id: Uuid,
    pub delta: Decimal,
    pub quantity_after: Decimal,
    pub reason_code: &'a str,
    pub note: Option<&'a str>,
    /// The document that caused it (a return, a void), if any.
    pub document_id: Option<Uuid>,
    pub user_id: Uuid,
    pub at: DateTime<Utc>,
}

pub async fn insert_movement(tx: &mut AuditedTx, m: &NewMovement<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, note, user_id, created_at, document_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(m.id)
    .bind(m.product_id)
    .bind(m.location_id)
    .bind(m.delta)
    .bind(m.quantity_after)
    .bind(m.reason_code)
    .bind(m.note)
    .bind(m.user_id)
    .bind(m.at)
    .bind(m.document_id)
    .execute(&mut **tx)
    .await
    .map(drop)
}
