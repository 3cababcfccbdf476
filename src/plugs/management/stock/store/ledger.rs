//! The stock ledger as the API reads it (`stock_ledger`: the module's movements and the sales'
//! tracked lines), and the check that every level is the sum of its movements.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::three_decimals;

/// One change of a stock level.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Movement {
    pub product_id: Uuid,
    pub location_id: Uuid,
    #[schema(value_type = String, example = "-2.000")]
    #[serde(serialize_with = "three_decimals")]
    pub quantity_delta: Decimal,
    /// The level after this movement.
    #[schema(value_type = String, example = "8.000")]
    #[serde(serialize_with = "three_decimals")]
    pub quantity_after: Decimal,
    /// `sale`, `received`, `count`, `transfer_out`, `transfer_in`, `return`...
    pub reason_code: String,
    pub note: Option<String>,
    /// The document that caused it (a sale, a return, a transfer, a count), if any.
    pub document_id: Option<Uuid>,
    /// The document's line, for a sale.
    pub line_no: Option<i32>,
    pub user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// What the ledger is filtered by.
pub struct LedgerFilter<'a> {
    pub product_id: Option<Uuid>,
    pub location_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub reason: Option<&'a str>,
}

/// A page of movements in the order they happened.
pub async fn movements(
    conn: &mut PgConnection,
    filter: &LedgerFilter<'_>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Movement>, sqlx::Error> {
    sqlx::query_as(
        "SELECT product_id, location_id, quantity_delta, quantity_after, reason_code, note, document_id, \
                line_no, user_id, created_at \
         FROM stock_ledger \
         WHERE ($1::uuid IS NULL OR product_id = $1) AND ($2::uuid IS NULL OR location_id = $2) \
           AND ($3::timestamptz IS NULL OR created_at >= $3) AND ($4::timestamptz IS NULL OR created_at < $4) \
           AND ($5::text IS NULL OR reason_code = $5) \
         ORDER BY created_at, order_id, line_no OFFSET $6 LIMIT $7",
    )
    .bind(filter.product_id)
    .bind(filter.location_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.reason)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Levels that are not the sum of their movements: (product, location, level, sum), at most 20.
pub async fn levels_off_their_movements(
    conn: &mut PgConnection,
) -> Result<(i64, Vec<(Uuid, Uuid, Decimal, Decimal)>), sqlx::Error> {
    let checked: i64 = sqlx::query_scalar("SELECT count(*) FROM stock_levels")
        .fetch_one(&mut *conn)
        .await?;
    let off = sqlx::query_as(
        "SELECT product_id, location_id, COALESCE(l.quantity, 0), COALESCE(m.total, 0) \
         FROM stock_levels l \
         FULL JOIN (SELECT product_id, location_id, sum(quantity_delta) AS total FROM stock_ledger \
                    GROUP BY product_id, location_id) m USING (product_id, location_id) \
         WHERE COALESCE(l.quantity, 0) <> COALESCE(m.total, 0) \
         ORDER BY product_id, location_id LIMIT 20",
    )
    .fetch_all(conn)
    .await?;
    Ok((checked, off))
}
