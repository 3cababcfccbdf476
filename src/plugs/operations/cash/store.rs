//! The cash module's SQL: `cash_sessions`, `cash_movements` (its tables). Writes take the
//! audited transaction, so none can commit without its audit record.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use super::rules::CashFlows;
use crate::core::audit::{AuditedPart, AuditedTx};
use crate::core::state::AppState;
use crate::plugs::operations::api::cash::{
    SessionRefunds, SessionSales, session_refunds, session_sales,
};

/// A cash session as stored.
#[derive(Debug, sqlx::FromRow)]
pub struct SessionRow {
    pub id: Uuid,
    pub register_id: Uuid,
    pub status: String,
    pub opening_float: Decimal,
    pub opened_by: Uuid,
    pub opened_at: DateTime<Utc>,
    pub closed_by: Option<Uuid>,
    pub closed_at: Option<DateTime<Utc>>,
    pub expected_cash: Option<Decimal>,
    pub counted_cash: Option<Decimal>,
    pub variance: Option<Decimal>,
    pub variance_reason: Option<String>,
    pub version: i64,
}

const SELECT: &str = "SELECT id, register_id, status, opening_float, opened_by, opened_at, closed_by, closed_at, \
    expected_cash, counted_cash, variance, variance_reason, version FROM cash_sessions";

/// How a read locks the session row until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    None,
    /// Movements and sales: they may go on together; a close waits for them.
    Share,
    /// A close: waits for sales and movements in flight, then blocks new ones.
    Update,
}

/// Session `id`, locked as asked.
pub async fn session(
    conn: &mut PgConnection,
    id: Uuid,
    lock: Lock,
) -> Result<Option<SessionRow>, sqlx::Error> {
    let suffix = match lock {
        Lock::None => "",
        Lock::Share => " FOR SHARE",
        Lock::Update => " FOR UPDATE",
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT} WHERE id = $1{suffix}"
    )))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Up to `limit` sessions after the first `offset`, newest first, optionally of one register or status.
pub async fn sessions(
    conn: &mut PgConnection,
    register_id: Option<Uuid>,
    status: Option<&str>,
    offset: i64,
    limit: i64,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    let sql = format!(
        "{SELECT} WHERE ($1::uuid IS NULL OR register_id = $1) AND ($2::text IS NULL OR status = $2) \
         ORDER BY opened_at DESC, id DESC OFFSET $3 LIMIT $4"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(register_id)
        .bind(status)
        .bind(offset)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Opens a session (the database refuses a second open one per register: `cash_sessions_one_open`).
pub async fn insert_session(
    tx: &mut AuditedTx,
    id: Uuid,
    register_id: Uuid,
    opening_float: Decimal,
    opened_by: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cash_sessions (id, register_id, opening_float, opened_by, opened_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(register_id)
    .bind(opening_float)
    .bind(opened_by)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Records cash put into (`in`) or taken out of (`out`) session `session_id`'s drawer.
#[allow(clippy::too_many_arguments)] // One column each; a struct would only rename them.
pub async fn insert_movement(
    tx: &mut AuditedTx,
    id: Uuid,
    session_id: Uuid,
    kind: &str,
    amount: Decimal,
    reason: &str,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cash_movements (id, cash_session_id, kind, amount, reason, user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(session_id)
    .bind(kind)
    .bind(amount)
    .bind(reason)
    .bind(user_id)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// What a close records.
#[derive(Debug)]
pub struct Closing<'a> {
    pub closed_by: Uuid,
    pub at: DateTime<Utc>,
    pub expected: Decimal,
    pub counted: Decimal,
    pub reason: Option<&'a str>,
}

/// Closes session `id` with its counted cash and variance.
pub async fn close_session(
    tx: &mut AuditedTx,
    id: Uuid,
    c: &Closing<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE cash_sessions SET status = 'closed', closed_by = $2, closed_at = $3, expected_cash = $4, \
         counted_cash = $5, variance = $6, variance_reason = $7, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(c.closed_by)
    .bind(c.at)
    .bind(c.expected)
    .bind(c.counted)
    .bind(c.counted - c.expected)
    .bind(c.reason)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// The cash flows of session `id`: its own, and its sales' (through the sales module's provider).
pub async fn cash_flows(
    state: &AppState,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(CashFlows, SessionSales, SessionRefunds, DrawerFlows), sqlx::Error> {
    let drawer = drawer_flows(conn, id).await?;
    let sales = session_sales(state, conn, id).await?;
    let refunds = session_refunds(state, conn, id).await?;
    let flows = CashFlows {
        opening_float: drawer.opening_float,
        cash_payments: sales.cash_payments,
        change_given: sales.change_given,
        cash_in: drawer.cash_in,
        cash_out: drawer.cash_out,
        cash_refunds: refunds.cash_refunded,
    };
    Ok((flows, sales, refunds, drawer))
}

/// The open session of `register_id`, if any.
pub async fn open_session(
    conn: &mut PgConnection,
    register_id: Uuid,
) -> Result<Option<OpenSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, opened_by FROM cash_sessions WHERE register_id = $1 AND status = 'open'",
    )
    .bind(register_id)
    .fetch_optional(conn)
    .await
}

/// A register's open session and the cashier it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct OpenSession {
    pub id: Uuid,
    pub opened_by: Uuid,
}

/// See [`crate::plugs::operations::api::cash::OPEN_SESSIONS`].
pub const OPEN_SESSIONS: AuditedPart = AuditedPart::new(
    "open AS (SELECT register_id, id AS session_id, opened_by FROM cash_sessions WHERE register_id = ANY($1) AND status = 'open' \
       ORDER BY register_id FOR SHARE)",
    1,
    &["open"],
);

/// A session's own cash flows: the opening float, cash put in and taken out.
#[derive(Debug, Default, Clone, Copy, sqlx::FromRow)]
pub struct DrawerFlows {
    pub opening_float: Decimal,
    pub cash_in: Decimal,
    pub cash_out: Decimal,
    /// Drawer opens without a sale.
    pub no_sales: i64,
}

/// The drawer flows of session `id`.
pub async fn drawer_flows(conn: &mut PgConnection, id: Uuid) -> Result<DrawerFlows, sqlx::Error> {
    sqlx::query_as(
        "SELECT cs.opening_float, \
           COALESCE((SELECT sum(m.amount) FROM cash_movements m WHERE m.cash_session_id = cs.id AND m.kind = 'in'), 0) AS cash_in, \
           COALESCE((SELECT sum(m.amount) FROM cash_movements m WHERE m.cash_session_id = cs.id AND m.kind = 'out'), 0) AS cash_out, \
           (SELECT count(*) FROM cash_movements m WHERE m.cash_session_id = cs.id AND m.kind = 'no_sale') AS no_sales \
         FROM cash_sessions cs WHERE cs.id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Movement `id` as answered.
pub async fn movement(
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<crate::plugs::operations::cash::http::Movement, sqlx::Error> {
    let (cash_session_id, kind, amount, reason, user_id, created_at): (
        Uuid,
        String,
        Decimal,
        String,
        Uuid,
        DateTime<Utc>,
    ) = sqlx::query_as(
        "SELECT cash_session_id, kind, amount, reason, user_id, created_at FROM cash_movements WHERE id = $1",
    )
    .bind(id)
    .fetch_one(conn)
    .await?;
    Ok(crate::plugs::operations::cash::http::Movement {
        id,
        cash_session_id,
        kind,
        amount: crate::shared::money::show(amount, scale),
        reason,
        user_id,
        created_at,
    })
}

/// See [`crate::plugs::operations::api::cash::period_sessions`].
pub async fn period_sessions(
    conn: &mut PgConnection,
    registers: &[Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<crate::plugs::operations::api::cash::CashPeriod, sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) AS sessions_closed, COALESCE(sum(expected_cash), 0) AS expected, \
                COALESCE(sum(counted_cash), 0) AS counted, COALESCE(sum(variance), 0) AS variance, \
                (SELECT count(*) FROM cash_movements m JOIN cash_sessions s ON s.id = m.cash_session_id \
                  WHERE s.register_id = ANY($1) AND m.kind = 'no_sale' AND m.created_at >= $2 AND m.created_at < $3) AS no_sales \
         FROM cash_sessions WHERE register_id = ANY($1) AND status = 'closed' AND closed_at >= $2 AND closed_at < $3",
    )
    .bind(registers)
    .bind(start)
    .bind(end)
    .fetch_one(conn)
    .await
}

/// See [`crate::plugs::operations::api::cash::open_before`].
pub async fn open_before(
    conn: &mut PgConnection,
    registers: &[Uuid],
    before: DateTime<Utc>,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, register_id FROM cash_sessions WHERE register_id = ANY($1) AND status = 'open' AND opened_at < $2 \
         ORDER BY opened_at",
    )
    .bind(registers)
    .bind(before)
    .fetch_all(conn)
    .await
}

/// See [`crate::plugs::operations::api::cash::first_movement_at`].
pub async fn first_movement_at(
    conn: &mut PgConnection,
    registers: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(m.created_at) FROM cash_movements m JOIN cash_sessions s ON s.id = m.cash_session_id \
         WHERE s.register_id = ANY($1) AND m.created_at >= $2 AND m.created_at < $3",
    )
    .bind(registers)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await
}

/// See [`crate::plugs::operations::api::cash::no_sales_of`].
pub async fn no_sales_of(
    conn: &mut PgConnection,
    user: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, created_at FROM cash_movements WHERE user_id = $1 AND kind = 'no_sale' \
           AND created_at >= $2 AND created_at < $3 ORDER BY created_at",
    )
    .bind(user)
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}

/// See [`crate::plugs::operations::api::cash::active_users`].
pub async fn active_users(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT opened_by FROM cash_sessions WHERE opened_at < $2 AND (closed_at IS NULL OR closed_at >= $1) \
         UNION SELECT user_id FROM cash_movements WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await
}
