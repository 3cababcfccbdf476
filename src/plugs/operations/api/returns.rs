//! `operations.returns` for other modules: the returns and voids of a period, as a closing
//! reports them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::plugs::operations::api::sales::Numbers;

pub use crate::plugs::operations::returns::store::ReturnDoc;

/// Return or void `id` as the API shows it, or `None`.
pub async fn correction_document(
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<Option<ReturnDoc>, sqlx::Error> {
    crate::plugs::operations::returns::store::load(conn, id, scale).await
}

/// The return or void numbered `number`, with its kind.
pub async fn correction_numbered(
    conn: &mut PgConnection,
    number: &str,
) -> Result<Option<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, kind FROM returns WHERE number = $1")
        .bind(number)
        .fetch_optional(conn)
        .await
}

/// Documents of one kind: how many and their (negative) totals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindTotals {
    pub count: i64,
    pub net: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
}

/// The returns and voids of some registers in a period.
#[derive(Debug, Clone, Default)]
pub struct CorrectionsPeriod {
    pub returns: KindTotals,
    pub voids: KindTotals,
    /// (method, refunds, amount refunded), by method.
    pub refunds_by_method: Vec<(String, i64, Decimal)>,
    /// (rate, net, tax, gross) (negative), by rate.
    pub by_rate: Vec<(Decimal, Decimal, Decimal, Decimal)>,
    /// Per register: how many, and the first and last correction numbers (by time).
    pub numbers: Vec<Numbers>,
}

/// The returns and voids of `registers` recorded in `[start, end)`.
pub async fn period_totals(
    conn: &mut PgConnection,
    registers: &[Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<CorrectionsPeriod, sqlx::Error> {
    crate::plugs::operations::returns::store::period_totals(conn, registers, start, end).await
}

/// When the earliest return or void of `registers` in `[from, to)` was recorded, if any.
pub async fn first_at(
    conn: &mut PgConnection,
    registers: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    crate::plugs::operations::returns::store::first_at(conn, registers, from, to).await
}

/// A return or void as the suspicious-pattern rules look at it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CorrectionSeen {
    pub id: Uuid,
    pub kind: String,
    /// Negative.
    pub total: Decimal,
    pub original_sale_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// The returns and voids `cashier` recorded in `[start, end)`, oldest first.
pub async fn corrections_of(
    conn: &mut PgConnection,
    cashier: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<CorrectionSeen>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, kind, total, original_sale_id, created_at FROM returns \
         WHERE cashier_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at",
    )
    .bind(cashier)
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}

/// Who recorded a return or void in `[start, end)`.
pub async fn active_users(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT cashier_id FROM returns WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}
