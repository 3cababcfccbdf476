//! The approvals table: given, then used once.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// An approval as given.
#[derive(Debug)]
pub struct NewApproval<'a> {
    pub id: Uuid,
    pub action: &'a str,
    pub requester_id: Uuid,
    pub approver_id: Uuid,
    pub approver_username: &'a str,
    /// The till it was given on (till actions).
    pub register_id: Option<Uuid>,
    /// The record a back-office action is about (the customer erased).
    pub subject_id: Option<Uuid>,
    pub sale_id: Option<Uuid>,
    pub amount: Option<Decimal>,
    pub without_receipt: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(tx: &mut AuditedTx, a: &NewApproval<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO approvals (id, action, requester_id, approver_id, approver_username, register_id, sale_id, amount, \
           without_receipt, created_at, expires_at, subject_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(a.id)
    .bind(a.action)
    .bind(a.requester_id)
    .bind(a.approver_id)
    .bind(a.approver_username)
    .bind(a.register_id)
    .bind(a.sale_id)
    .bind(a.amount)
    .bind(a.without_receipt)
    .bind(a.created_at)
    .bind(a.expires_at)
    .bind(a.subject_id)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// When approval `id` expires (a replayed create answers it again).
pub async fn expiry(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<(String, DateTime<Utc>, String)>, sqlx::Error> {
    sqlx::query_as("SELECT action, expires_at, approver_username FROM approvals WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// What an action asks of the approval it carries.
#[derive(Debug, Clone)]
pub struct Wanted<'a> {
    pub action: &'a str,
    /// The caller performing the action (the cashier the approval was given to).
    pub requester: Uuid,
    /// The till (till actions; none for back-office ones).
    pub register_id: Option<Uuid>,
    /// The record a back-office action is about (the customer erased).
    pub subject_id: Option<Uuid>,
    /// The document the action is about (the sale voided or returned, the sale being made).
    pub sale_id: Option<Uuid>,
    /// The amount at stake (refund total, discount, override reduction); at most the approved one.
    pub amount: Option<Decimal>,
    /// A return without a receipt (only an approval given for one covers it).
    pub without_receipt: bool,
    /// The request using it (its scoped idempotency key, and for a sale its body's digest): a
    /// retry of the same request may use it again, until it expires.
    pub request: &'a str,
}

/// Who approved.
#[derive(Debug, Clone)]
pub struct Used {
    pub approval_ref: String,
    pub approver_id: Uuid,
    pub approver_username: String,
}

/// Marks approval `id` used by `wanted.request` if it matches, has not expired at `now`, and is
/// unused (or used by this very request); `None` otherwise.
pub async fn consume(
    conn: &mut PgConnection,
    id: Uuid,
    wanted: &Wanted<'_>,
    now: DateTime<Utc>,
) -> Result<Option<Used>, sqlx::Error> {
    let row: Option<(Uuid, String)> = sqlx::query_as(
        "UPDATE approvals SET used_at = coalesce(used_at, $8), used_key = coalesce(used_key, $9) \
         WHERE id = $1 AND action = $2 AND requester_id = $3 AND register_id IS NOT DISTINCT FROM $4 \
           AND subject_id IS NOT DISTINCT FROM $10 \
           AND (sale_id IS NULL OR sale_id = $5) AND (NOT $6 OR without_receipt) \
           AND (amount IS NULL OR coalesce($7::numeric, 0) <= amount) \
           AND expires_at > $8 AND (used_at IS NULL OR used_key = $9) \
         RETURNING approver_id, approver_username",
    )
    .bind(id)
    .bind(wanted.action)
    .bind(wanted.requester)
    .bind(wanted.register_id)
    .bind(wanted.sale_id)
    .bind(wanted.without_receipt)
    .bind(wanted.amount)
    .bind(now)
    .bind(wanted.request)
    .bind(wanted.subject_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(approver_id, approver_username)| Used {
        approval_ref: id.to_string(),
        approver_id,
        approver_username,
    }))
}
