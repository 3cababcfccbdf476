//! `operations.cash` for other modules: a register's open session, the statement part that
//! share-locks open sessions, and what cash needs back from the module that records sales.
//!
//! Sales depend on cash (a sale goes into an open session), so cash cannot call sales for the
//! X report's and the close's sales totals. Cash declares what it needs here ([`SessionSales`],
//! [`SessionSalesSource`]); the sales module provides it when the state is made
//! (`AppState::provide`), and cash reads it with [`session_sales`].

use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::state::AppState;

/// Registers whose open session is kept in memory at most.
const SESSION_CACHE: usize = 10_000;

/// The open session of a register, as cached.
#[derive(Debug, Clone, Copy)]
struct OpenSessionOf(Option<OpenSession>);

pub use crate::plugs::operations::cash::MANAGE_ANY;
pub use crate::plugs::operations::cash::http::{no_open_session, not_your_session, refuse_others};
pub use crate::plugs::operations::cash::offline::session_for_push;
pub use crate::plugs::operations::cash::store::OpenSession;

/// The open cash session of `register_id`, kept in memory until a cash session changes (see
/// [`crate::core::db::changes`]). A writer must check it again under [`OPEN_SESSIONS`].
pub async fn open_session(
    state: &AppState,
    register_id: Uuid,
) -> Result<Option<OpenSession>, sqlx::Error> {
    let found = state
        .cache::<Uuid, OpenSessionOf>(SESSION_CACHE)
        .get_or_read(register_id, || async {
            let mut conn = state.pool().acquire().await?;
            crate::plugs::operations::cash::store::open_session(&mut conn, register_id)
                .await
                .map(|id| Some(OpenSessionOf(id)))
        })
        .await?;
    Ok(found.and_then(|s| s.0))
}

/// The part of a caller's audited statement that share-locks the open sessions of the registers
/// in its parameter (a `uuid[]`), in register order, and defines `open(register_id, session_id,
/// opened_by)`.
/// A close locks its session exclusively, so no row the statement writes against a session can
/// land in a closed one.
pub use crate::plugs::operations::cash::store::OPEN_SESSIONS;

/// A session's sales, as the X report and the close need them.
#[derive(Debug, Clone, Default)]
pub struct SessionSales {
    pub count: i64,
    pub net: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    /// Cash rounding over all sales (positive: customers paid more than the exact totals).
    pub cash_rounding: Decimal,
    /// Cash payments received (before change).
    pub cash_payments: Decimal,
    pub change_given: Decimal,
    /// (method, payments, amount), by method.
    pub by_method: Vec<(String, i64, Decimal)>,
    /// (rate, net, tax, gross), by rate.
    pub by_rate: Vec<(Decimal, Decimal, Decimal, Decimal)>,
}

/// Reads the sales of a session.
pub type SessionSalesReader =
    for<'a> fn(&'a mut PgConnection, Uuid) -> BoxFuture<'a, Result<SessionSales, sqlx::Error>>;

/// What the sales module provides so that cash can read a session's sales.
#[derive(Clone, Copy)]
pub struct SessionSalesSource(pub SessionSalesReader);

/// The sales of session `id`. Without a provider this is an error, never zero: a close that
/// counted no sales would record a false variance.
pub async fn session_sales(
    state: &AppState,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<SessionSales, sqlx::Error> {
    match state.provided::<SessionSalesSource>() {
        Some(source) => (source.0)(conn, id).await,
        None => Err(sqlx::Error::Configuration(
            "no module provides a cash session's sales (operations.sales is not installed)".into(),
        )),
    }
}

/// A session's returns and voids, as the X report and the close need them.
#[derive(Debug, Clone, Default)]
pub struct SessionRefunds {
    pub returns: i64,
    pub voids: i64,
    /// The documents' totals (negative).
    pub net: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    /// (method, refunds, amount refunded), by method.
    pub by_method: Vec<(String, i64, Decimal)>,
    /// Cash handed back out of the drawer.
    pub cash_refunded: Decimal,
}

/// Reads the returns and voids of a session.
pub type SessionRefundsReader =
    for<'a> fn(&'a mut PgConnection, Uuid) -> BoxFuture<'a, Result<SessionRefunds, sqlx::Error>>;

/// What the returns module provides so that cash can count a session's refunds.
#[derive(Clone, Copy)]
pub struct SessionRefundsSource(pub SessionRefundsReader);

/// The refunds of session `id`; none when no module records returns (then none can exist).
pub async fn session_refunds(
    state: &AppState,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<SessionRefunds, sqlx::Error> {
    match state.provided::<SessionRefundsSource>() {
        Some(source) => (source.0)(conn, id).await,
        None => Ok(SessionRefunds::default()),
    }
}

/// A session as a document written into it sees it, share-locked until the caller's
/// transaction ends (a close waits for it, and it never lands in a closed session).
#[derive(Debug, Clone, Copy)]
pub struct LockedSession {
    pub id: Uuid,
    pub register_id: Uuid,
    pub opened_by: Uuid,
    pub open: bool,
}

/// Session `id`, share-locked; `None` when there is no such session.
pub async fn lock_session(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<LockedSession>, sqlx::Error> {
    use crate::plugs::operations::cash::store::{Lock, session};
    Ok(session(conn, id, Lock::Share)
        .await?
        .map(|s| LockedSession {
            id: s.id,
            register_id: s.register_id,
            opened_by: s.opened_by,
            open: s.status == "open",
        }))
}

/// The open session of `register_id`, share-locked; `None` when it has none.
pub async fn lock_open_session(
    conn: &mut PgConnection,
    register_id: Uuid,
) -> Result<Option<LockedSession>, sqlx::Error> {
    let Some(open) = crate::plugs::operations::cash::store::open_session(conn, register_id).await?
    else {
        return Ok(None);
    };
    Ok(lock_session(conn, open.id).await?.filter(|s| s.open))
}

/// The cash sessions of some registers in a period, as a closing reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct CashPeriod {
    /// Sessions closed in the period.
    pub sessions_closed: i64,
    pub expected: Decimal,
    pub counted: Decimal,
    /// counted - expected, summed.
    pub variance: Decimal,
    /// Drawer opens without a sale in the period.
    pub no_sales: i64,
}

/// The sessions of `registers` closed in `[start, end)`, and the no-sales recorded in it.
pub async fn period_sessions(
    conn: &mut PgConnection,
    registers: &[Uuid],
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> Result<CashPeriod, sqlx::Error> {
    crate::plugs::operations::cash::store::period_sessions(conn, registers, start, end).await
}

/// The sessions of `registers` opened before `before` and still open: (session, register).
pub async fn open_before(
    conn: &mut PgConnection,
    registers: &[Uuid],
    before: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    crate::plugs::operations::cash::store::open_before(conn, registers, before).await
}

/// When the earliest cash movement of `registers`' sessions in `[from, to)` was recorded.
pub async fn first_movement_at(
    conn: &mut PgConnection,
    registers: &[Uuid],
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    crate::plugs::operations::cash::store::first_movement_at(conn, registers, from, to).await
}

/// The job that looks for suspicious patterns in a cashier's business day (`administration.incidents`
/// runs it): queued in the transaction of each return, void, discounted sale and no-sale.
pub const REVIEW: crate::core::jobs::JobKind = crate::core::jobs::JobKind {
    name: "flags.review",
    max_attempts: 3,
    description: "Look for suspicious patterns in a cashier's business day",
    retryable: true,
};

/// How long a review waits after the document that queued it, so that a busy cashier's
/// documents are reviewed together (one pending review per cashier).
pub const REVIEW_DELAY_SECS: i64 = 30;

/// Queues a review of `cashier`'s business day around `at`, to run [`REVIEW_DELAY_SECS`] later
/// (one per cashier and half minute: the documents of that half minute share it).
pub async fn review_later(
    conn: &mut PgConnection,
    cashier: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    let (payload, key, run_at) = review_job(cashier, at);
    crate::core::jobs::enqueue(conn, &REVIEW, payload, Some(&key), run_at)
        .await
        .map(drop)
}

/// The review [`review_later`] queues, for a caller that queues jobs in its own statement
/// (`core::jobs::ENQUEUE_PART`): its payload, unique key and due time.
pub fn review_job(
    cashier: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> (serde_json::Value, String, chrono::DateTime<chrono::Utc>) {
    (
        serde_json::json!({"user_id": cashier, "at": at}),
        // One per cashier and half minute: a review running does not hold back the next one.
        format!(
            "flags.review:{cashier}:{}",
            at.timestamp().div_euclid(REVIEW_DELAY_SECS)
        ),
        at + chrono::Duration::seconds(REVIEW_DELAY_SECS),
    )
}

/// A drawer opened without a sale: (movement, when).
pub async fn no_sales_of(
    conn: &mut PgConnection,
    user: Uuid,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<(Uuid, chrono::DateTime<chrono::Utc>)>, sqlx::Error> {
    crate::plugs::operations::cash::store::no_sales_of(conn, user, start, end).await
}

/// Who opened a session, or recorded a cash movement, in `[start, end)`.
pub async fn active_users(
    conn: &mut PgConnection,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    crate::plugs::operations::cash::store::active_users(conn, start, end).await
}

/// Counts the receipt copies (reprints) made at a register in `[start, end)`: given by the
/// receipts module, which depends on cash through sales.
pub type ReceiptCopiesReader = for<'c> fn(
    &'c mut PgConnection,
    Uuid,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
) -> BoxFuture<'c, Result<i64, sqlx::Error>>;

/// The receipts module's [`ReceiptCopiesReader`], provided to the state.
#[derive(Clone, Copy)]
pub struct ReceiptCopiesSource(pub ReceiptCopiesReader);

/// The receipt copies made at `register` in `[start, end)`; zero when no module prints receipts.
pub async fn receipt_copies(
    state: &AppState,
    conn: &mut PgConnection,
    register: Uuid,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> Result<i64, sqlx::Error> {
    match state.provided::<ReceiptCopiesSource>() {
        Some(source) => (source.0)(conn, register, start, end).await,
        None => Ok(0),
    }
}
