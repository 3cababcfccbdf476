//! The closings module's SQL: `closings` (its table), written once and never changed.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// A closing as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClosingRow {
    pub id: Uuid,
    pub seq: i64,
    pub kind: String,
    pub branch_id: Uuid,
    pub business_date: NaiveDate,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub signed_message: String,
    pub hash: Vec<u8>,
    pub previous_hash: Vec<u8>,
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

impl ClosingRow {
    /// The period it closed.
    pub fn period(&self) -> super::period::Period {
        super::period::Period {
            start: self.period_start,
            end: self.period_end,
        }
    }
}

const SELECT: &str = "SELECT id, seq, kind, branch_id, business_date, period_start, period_end, signed_message, hash, \
    previous_hash, public_key, signature, created_by, created_at FROM closings";

/// Waits for every document write in flight and holds new ones back until the transaction
/// ends (`lock_documents_for_closing`, migration 0023); closings are made one at a time.
pub async fn lock(tx: &mut AuditedTx) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('plugpos.closings'))")
        .execute(&mut **tx)
        .await?;
    sqlx::query("SELECT lock_documents_for_closing()")
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The last closing of the chain: (seq, hash).
pub async fn chain_end(conn: &mut PgConnection) -> Result<Option<(i64, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT seq, hash FROM closings ORDER BY seq DESC LIMIT 1")
        .fetch_optional(conn)
        .await
}

/// The closing of `kind` for `date` at `branch`, if made.
pub async fn find(
    conn: &mut PgConnection,
    branch: Uuid,
    kind: &str,
    date: NaiveDate,
) -> Result<Option<ClosingRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE branch_id = $1 AND kind = $2 AND business_date = $3"
    )))
    .bind(branch)
    .bind(kind)
    .bind(date)
    .fetch_optional(conn)
    .await
}

/// The branch's latest closing of `kind` ending at or before `end` (any, without `end`).
pub async fn latest(
    conn: &mut PgConnection,
    branch: Uuid,
    kind: &str,
    end: Option<DateTime<Utc>>,
) -> Result<Option<ClosingRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE branch_id = $1 AND kind = $2 AND ($3::timestamptz IS NULL OR period_end <= $3) \
         ORDER BY period_end DESC LIMIT 1"
    )))
    .bind(branch)
    .bind(kind)
    .bind(end)
    .fetch_optional(conn)
    .await
}

/// The earliest period (its first day, `first_of` being `month` or `year`) before `before`
/// that has day closings but no closing of that kind: it must be closed first.
pub async fn earlier_open(
    conn: &mut PgConnection,
    branch: Uuid,
    first_of: &str,
    before: NaiveDate,
) -> Result<Option<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(p) FROM (SELECT DISTINCT date_trunc($2, business_date)::date AS p FROM closings \
           WHERE branch_id = $1 AND kind = 'day' AND business_date < $3) d \
         WHERE NOT EXISTS (SELECT 1 FROM closings c WHERE c.branch_id = $1 AND c.kind = $2 AND c.business_date = d.p)",
    )
    .bind(branch)
    .bind(first_of)
    .bind(before)
    .fetch_one(conn)
    .await
}

pub async fn insert(tx: &mut AuditedTx, row: &ClosingRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO closings (id, seq, kind, branch_id, business_date, period_start, period_end, signed_message, hash, \
           previous_hash, public_key, signature, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(row.id)
    .bind(row.seq)
    .bind(&row.kind)
    .bind(row.branch_id)
    .bind(row.business_date)
    .bind(row.period_start)
    .bind(row.period_end)
    .bind(&row.signed_message)
    .bind(&row.hash)
    .bind(&row.previous_hash)
    .bind(&row.public_key)
    .bind(&row.signature)
    .bind(row.created_by)
    .bind(row.created_at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<ClosingRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Up to `limit` closings, newest first, before chain position `before`.
pub async fn list(
    conn: &mut PgConnection,
    kind: Option<&str>,
    branch: Option<Uuid>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<ClosingRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE ($1::text IS NULL OR kind = $1) AND ($2::uuid IS NULL OR branch_id = $2) \
           AND ($3::bigint IS NULL OR seq < $3) ORDER BY seq DESC LIMIT $4"
    )))
    .bind(kind)
    .bind(branch)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Every closing, in chain order.
pub async fn all(conn: &mut PgConnection) -> Result<Vec<ClosingRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} ORDER BY seq")))
        .fetch_all(conn)
        .await
}
