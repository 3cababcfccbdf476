//! Stock counts' SQL: `stock_counts`, `stock_count_products`, `stock_count_lines`, and posting a
//! count's differences into the levels and the ledger in one statement.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::three_decimals;
use crate::core::audit::AuditedTx;

/// A count of one location.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Count {
    pub id: Uuid,
    pub location_id: Uuid,
    /// `all`, `category` or `products`.
    pub scope: String,
    pub category_id: Option<Uuid>,
    /// `open`, `posted` or `cancelled`.
    pub status: String,
    pub note: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub posted_by: Option<Uuid>,
    pub posted_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub version: i64,
    /// Products counted so far.
    pub lines: i64,
    /// The products of a `products` count.
    #[sqlx(skip)]
    pub product_ids: Vec<Uuid>,
}

/// One counted product.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct CountLine {
    pub product_id: Uuid,
    #[schema(value_type = String, example = "7.000")]
    #[serde(serialize_with = "three_decimals")]
    pub counted: Decimal,
    /// The level when the product was last counted.
    #[schema(value_type = String, example = "8.000")]
    #[serde(serialize_with = "three_decimals")]
    pub book: Decimal,
    /// Scans (or entries) that added up to `counted`.
    pub scans: i32,
    pub counted_by: Uuid,
    pub counted_at: DateTime<Utc>,
}

const COLUMNS: &str = "c.id, c.location_id, c.scope, c.category_id, c.status, c.note, c.created_by, c.created_at, \
     c.posted_by, c.posted_at, c.cancelled_by, c.cancelled_at, c.version, \
     (SELECT count(*) FROM stock_count_lines l WHERE l.count_id = c.id) AS lines";

pub async fn insert(tx: &mut AuditedTx, c: &Count) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stock_counts (id, location_id, scope, category_id, status, note, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $7)",
    )
    .bind(c.id)
    .bind(c.location_id)
    .bind(&c.scope)
    .bind(c.category_id)
    .bind(&c.note)
    .bind(c.created_by)
    .bind(c.created_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO stock_count_products (count_id, product_id) SELECT $1, unnest($2::uuid[])",
    )
    .bind(c.id)
    .bind(&c.product_ids)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Count `id` (`FOR UPDATE` when `lock`).
pub async fn load(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Count>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM stock_counts c WHERE c.id = $1{}",
        if lock { " FOR UPDATE OF c" } else { "" }
    );
    let Some(mut count) = sqlx::query_as::<_, Count>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    count.product_ids = sqlx::query_scalar(
        "SELECT product_id FROM stock_count_products WHERE count_id = $1 ORDER BY product_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(Some(count))
}

/// A page of counts, newest first.
pub async fn list(
    conn: &mut PgConnection,
    status: Option<&str>,
    location_id: Option<Uuid>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Count>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM stock_counts c WHERE ($1::text IS NULL OR c.status = $1) \
         AND ($2::uuid IS NULL OR c.location_id = $2) ORDER BY c.created_at DESC, c.id DESC OFFSET $3 LIMIT $4"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status)
        .bind(location_id)
        .bind(offset)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Adds (or sets, `add = false`) the counted quantities of `products` at `location`, taking the
/// book quantity of each line as the level now. Returns the lines as they are after.
#[allow(clippy::too_many_arguments)]
pub async fn count_products(
    tx: &mut AuditedTx,
    count_id: Uuid,
    location_id: Uuid,
    products: &[Uuid],
    quantities: &[Decimal],
    add: bool,
    by: Uuid,
    at: DateTime<Utc>,
) -> Result<Vec<CountLine>, sqlx::Error> {
    sqlx::query_as(
        "WITH input AS (SELECT product_id, sum(quantity) AS quantity, count(*)::int AS scans \
                        FROM unnest($3::uuid[], $4::numeric[]) AS i (product_id, quantity) GROUP BY product_id) \
         INSERT INTO stock_count_lines AS l (count_id, product_id, counted, book, scans, counted_by, counted_at) \
         SELECT $1, i.product_id, i.quantity, COALESCE(s.quantity, 0), i.scans, $6, $7 \
           FROM input i LEFT JOIN stock_levels s ON s.product_id = i.product_id AND s.location_id = $2 \
         ON CONFLICT (count_id, product_id) DO UPDATE SET \
             counted = CASE WHEN $5 THEN l.counted + EXCLUDED.counted ELSE EXCLUDED.counted END, \
             scans = CASE WHEN $5 THEN l.scans + EXCLUDED.scans ELSE EXCLUDED.scans END, \
             book = EXCLUDED.book, counted_by = EXCLUDED.counted_by, counted_at = EXCLUDED.counted_at \
         RETURNING l.product_id, l.counted, l.book, l.scans, l.counted_by, l.counted_at",
    )
    .bind(count_id)
    .bind(location_id)
    .bind(products)
    .bind(quantities)
    .bind(add)
    .bind(by)
    .bind(at)
    .fetch_all(&mut **tx)
    .await
}

/// Every line of count `id`, by product.
pub async fn lines(conn: &mut PgConnection, id: Uuid) -> Result<Vec<CountLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT product_id, counted, book, scans, counted_by, counted_at FROM stock_count_lines \
         WHERE count_id = $1 ORDER BY product_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}

/// Products with a non-zero level at `location_id` that count `id` has no line for.
pub async fn uncounted_with_stock(
    conn: &mut PgConnection,
    id: Uuid,
    location_id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.product_id FROM stock_levels s WHERE s.location_id = $2 AND s.quantity <> 0 \
         AND NOT EXISTS (SELECT 1 FROM stock_count_lines l WHERE l.count_id = $1 AND l.product_id = s.product_id) \
         ORDER BY s.product_id",
    )
    .bind(id)
    .bind(location_id)
    .fetch_all(conn)
    .await
}

/// Posts count `id`: every line whose counted quantity differs from its book quantity changes
/// the level by the difference, with a `count` movement (the level after it as the ledger
/// needs). One statement for the whole count. Returns the movements written.
pub async fn post(
    tx: &mut AuditedTx,
    id: Uuid,
    location_id: Uuid,
    movement_ids: &[Uuid],
    by: Uuid,
    at: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "WITH diff AS ( \
             SELECT product_id, counted - book AS delta, row_number() OVER (ORDER BY product_id) AS n \
               FROM stock_count_lines WHERE count_id = $1 AND counted <> book), \
         ids AS (SELECT id, n FROM unnest($3::uuid[]) WITH ORDINALITY AS x (id, n)), \
         levels AS ( \
             INSERT INTO stock_levels AS s (product_id, location_id, quantity) \
             SELECT product_id, $2, delta FROM diff ORDER BY product_id \
             ON CONFLICT (product_id, location_id) DO UPDATE \
                SET quantity = s.quantity + EXCLUDED.quantity, version = s.version + 1, updated_at = now() \
             RETURNING s.product_id, s.quantity) \
         INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, note, \
                                      document_id, user_id, created_at) \
         SELECT ids.id, d.product_id, $2, d.delta, l.quantity, 'count', NULL, $1, $4, $5 \
           FROM diff d JOIN levels l USING (product_id) JOIN ids USING (n)",
    )
    .bind(id)
    .bind(location_id)
    .bind(movement_ids)
    .bind(by)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map(|r| r.rows_affected())
}

/// Lines whose counted quantity differs from their book quantity.
pub async fn differing_lines(conn: &mut PgConnection, id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM stock_count_lines WHERE count_id = $1 AND counted <> book",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Moves count `id` to `status`, stamping who and when.
pub async fn set_status(
    tx: &mut AuditedTx,
    id: Uuid,
    status: &str,
    by: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stock_counts SET status = $2, version = version + 1, updated_at = $4, \
             posted_by = CASE WHEN $2 = 'posted' THEN $3 ELSE posted_by END, \
             posted_at = CASE WHEN $2 = 'posted' THEN $4 ELSE posted_at END, \
             cancelled_by = CASE WHEN $2 = 'cancelled' THEN $3 ELSE cancelled_by END, \
             cancelled_at = CASE WHEN $2 = 'cancelled' THEN $4 ELSE cancelled_at END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(by)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Bumps count `id`'s version (lines were entered).
pub async fn touch(tx: &mut AuditedTx, id: Uuid, at: DateTime<Utc>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("UPDATE stock_counts SET version = version + 1, updated_at = $2 WHERE id = $1 RETURNING version")
        .bind(id)
        .bind(at)
        .fetch_one(&mut **tx)
        .await
}
