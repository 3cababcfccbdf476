//! Transfers' SQL: `stock_transfers`, `stock_transfer_lines`, `stock_transfer_counters`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use super::three_decimals;
use crate::core::audit::AuditedTx;

/// A transfer between two locations.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Transfer {
    pub id: Uuid,
    /// The source location's branch, which numbers it.
    pub branch_id: Uuid,
    /// 1, 2, 3... per branch.
    pub number: i64,
    pub from_location_id: Uuid,
    pub to_location_id: Uuid,
    /// `draft`, `sent`, `received` or `cancelled`.
    pub status: String,
    pub note: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub sent_by: Option<Uuid>,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_by: Option<Uuid>,
    pub received_at: Option<DateTime<Utc>>,
    pub cancelled_by: Option<Uuid>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub version: i64,
    #[sqlx(skip)]
    pub lines: Vec<TransferLine>,
}

/// One product of a transfer.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct TransferLine {
    pub line_no: i32,
    pub product_id: Uuid,
    /// Sent (or to send).
    #[schema(value_type = String, example = "12.000")]
    #[serde(serialize_with = "three_decimals")]
    pub quantity: Decimal,
    /// What arrived, once received.
    #[schema(value_type = Option<String>, example = "11.000")]
    #[serde(serialize_with = "optional_three_decimals")]
    pub received_quantity: Option<Decimal>,
    /// Why what arrived differs from what was sent (`damaged`, `lost`, `miscounted`).
    pub difference_reason: Option<String>,
}

fn optional_three_decimals<S: serde::Serializer>(
    q: &Option<Decimal>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match q {
        Some(q) => three_decimals(q, serializer),
        None => serializer.serialize_none(),
    }
}

const COLUMNS: &str = "id, branch_id, number, from_location_id, to_location_id, status, note, created_by, \
     created_at, sent_by, sent_at, received_by, received_at, cancelled_by, cancelled_at, version";

/// The next number of `branch_id`'s transfers (the counter row stays locked until commit, so
/// numbers have no gaps and no doubles).
pub async fn next_number(tx: &mut AuditedTx, branch_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO stock_transfer_counters AS c (branch_id, last_number) VALUES ($1, 1) \
         ON CONFLICT (branch_id) DO UPDATE SET last_number = c.last_number + 1 RETURNING c.last_number",
    )
    .bind(branch_id)
    .fetch_one(&mut **tx)
    .await
}

/// Inserts a draft with its lines.
pub async fn insert(tx: &mut AuditedTx, t: &Transfer) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO stock_transfers (id, branch_id, number, from_location_id, to_location_id, status, note, \
             created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'draft', $6, $7, $8, $8)",
    )
    .bind(t.id)
    .bind(t.branch_id)
    .bind(t.number)
    .bind(t.from_location_id)
    .bind(t.to_location_id)
    .bind(&t.note)
    .bind(t.created_by)
    .bind(t.created_at)
    .execute(&mut **tx)
    .await?;
    let line_nos: Vec<i32> = t.lines.iter().map(|l| l.line_no).collect();
    let products: Vec<Uuid> = t.lines.iter().map(|l| l.product_id).collect();
    let quantities: Vec<Decimal> = t.lines.iter().map(|l| l.quantity).collect();
    sqlx::query(
        "INSERT INTO stock_transfer_lines (transfer_id, line_no, product_id, quantity) \
         SELECT $1, * FROM unnest($2::int[], $3::uuid[], $4::numeric[])",
    )
    .bind(t.id)
    .bind(line_nos)
    .bind(products)
    .bind(quantities)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Transfer `id` with its lines (`FOR UPDATE` of the transfer row when `lock`).
pub async fn load(
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<Transfer>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM stock_transfers WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let Some(mut transfer) = sqlx::query_as::<_, Transfer>(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    transfer.lines = sqlx::query_as(
        "SELECT line_no, product_id, quantity, received_quantity, difference_reason \
         FROM stock_transfer_lines WHERE transfer_id = $1 ORDER BY line_no",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(Some(transfer))
}

/// Moves transfer `id` to `status`, stamping who and when, and bumps its version.
pub async fn set_status(
    tx: &mut AuditedTx,
    id: Uuid,
    status: &str,
    by: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stock_transfers SET status = $2, version = version + 1, updated_at = $4, \
             sent_by = CASE WHEN $2 = 'sent' THEN $3 ELSE sent_by END, \
             sent_at = CASE WHEN $2 = 'sent' THEN $4 ELSE sent_at END, \
             received_by = CASE WHEN $2 = 'received' THEN $3 ELSE received_by END, \
             received_at = CASE WHEN $2 = 'received' THEN $4 ELSE received_at END, \
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

/// Records what arrived on one line.
pub async fn set_received(
    tx: &mut AuditedTx,
    id: Uuid,
    line_no: i32,
    quantity: Decimal,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE stock_transfer_lines SET received_quantity = $3, difference_reason = $4 \
         WHERE transfer_id = $1 AND line_no = $2",
    )
    .bind(id)
    .bind(line_no)
    .bind(quantity)
    .bind(reason)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// A page of transfers, newest first, optionally in one state or touching one location.
pub async fn list(
    conn: &mut PgConnection,
    status: Option<&str>,
    location_id: Option<Uuid>,
    offset: i64,
    limit: i64,
) -> Result<Vec<Transfer>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM stock_transfers \
         WHERE ($1::text IS NULL OR status = $1) \
           AND ($2::uuid IS NULL OR from_location_id = $2 OR to_location_id = $2) \
         ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT $4"
    );
    let mut transfers: Vec<Transfer> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(status)
        .bind(location_id)
        .bind(offset)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let ids: Vec<Uuid> = transfers.iter().map(|t| t.id).collect();
    let lines: Vec<(Uuid, TransferLine)> = sqlx::query_as::<
        _,
        (Uuid, i32, Uuid, Decimal, Option<Decimal>, Option<String>),
    >(
        "SELECT transfer_id, line_no, product_id, quantity, received_quantity, difference_reason \
         FROM stock_transfer_lines WHERE transfer_id = ANY($1) ORDER BY transfer_id, line_no",
    )
    .bind(&ids)
    .fetch_all(conn)
    .await?
    .into_iter()
    .map(
        |(t, line_no, product_id, quantity, received_quantity, difference_reason)| {
            (
                t,
                TransferLine {
                    line_no,
                    product_id,
                    quantity,
                    received_quantity,
                    difference_reason,
                },
            )
        },
    )
    .collect();
    for (transfer_id, line) in lines {
        if let Some(t) = transfers.iter_mut().find(|t| t.id == transfer_id) {
            t.lines.push(line);
        }
    }
    Ok(transfers)
}

/// Goods on their way: per product and destination, the quantity of sent transfers.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct InTransit {
    pub product_id: Uuid,
    pub to_location_id: Uuid,
    #[schema(value_type = String, example = "6.000")]
    #[serde(serialize_with = "three_decimals")]
    pub quantity: Decimal,
    /// How many sent transfers carry it.
    pub transfers: i64,
}

pub async fn in_transit(
    conn: &mut PgConnection,
    product_id: Option<Uuid>,
    location_id: Option<Uuid>,
    offset: i64,
    limit: i64,
) -> Result<Vec<InTransit>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.product_id, t.to_location_id, sum(l.quantity) AS quantity, count(*) AS transfers \
         FROM stock_transfers t JOIN stock_transfer_lines l ON l.transfer_id = t.id \
         WHERE t.status = 'sent' AND ($1::uuid IS NULL OR l.product_id = $1) \
           AND ($2::uuid IS NULL OR t.to_location_id = $2) \
         GROUP BY l.product_id, t.to_location_id ORDER BY l.product_id, t.to_location_id OFFSET $3 LIMIT $4",
    )
    .bind(product_id)
    .bind(location_id)
    .bind(offset)
    .bind(limit)
    .fetch_all(conn)
    .await
}
