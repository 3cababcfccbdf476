//! `operations.returns` for other modules: the returns and voids of a period, as a closing
//! reports them.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::plugs::operations::api::sales::Numbers;

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
