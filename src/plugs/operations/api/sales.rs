//! `operations.sales` for other modules: a recorded sale as a correction (a return or a void)
//! needs it, and what sales need back from the module that records corrections.
//!
//! Returns depend on sales, so sales cannot call returns to show a sale's returns, its void and
//! what is left to return per line. Sales declare what they need here ([`Corrections`],
//! [`CorrectionsSource`]); the returns module provides it when the state is made, and the sale's
//! read asks [`corrections`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::state::AppState;

/// A recorded sale, as a return or a void reads it.
#[derive(Debug, Clone)]
pub struct SoldSale {
    pub id: Uuid,
    pub receipt_number: String,
    pub register_id: Uuid,
    pub cash_session_id: Uuid,
    pub cashier_id: Uuid,
    pub location_id: Option<Uuid>,
    pub currency: String,
    pub prices_include_tax: bool,
    pub net: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    pub cash_rounding: Decimal,
    pub change_due: Decimal,
    /// (method, amount), in the sale's order.
    pub payments: Vec<(String, Decimal)>,
    /// (rate, net, tax, gross), rates ascending.
    pub taxes: Vec<(Decimal, Decimal, Decimal, Decimal)>,
    pub lines: Vec<SoldLine>,
    pub created_at: DateTime<Utc>,
    /// The customer it named, if any (its returns and void name them too).
    pub customer_id: Option<Uuid>,
}

/// One line of a recorded sale.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SoldLine {
    pub line_no: i32,
    pub product_id: Uuid,
    pub sku: String,
    pub name: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    /// After its discounts.
    pub total: Decimal,
    pub tax_rate: Decimal,
    /// It took stock off a level (the product tracked stock when sold).
    pub tracked: bool,
}

pub use crate::plugs::operations::sales::discounts::DiscountKind;

/// What follows a recorded sale in another module (the receipts module's automatic print):
/// given the state, the sale's id and its register. Provided to the state; run on its own task,
/// so the sale's answer never waits for it.
#[derive(Clone, Copy)]
pub struct AfterSale(pub fn(AppState, Uuid, Uuid) -> BoxFuture<'static, ()>);

/// Runs the provided [`AfterSale`], if any, on its own task.
pub fn after_sale(state: &AppState, sale: Uuid, register: Uuid) {
    if let Some(hook) = state.provided::<AfterSale>() {
        tokio::spawn((hook.0)(state.clone(), sale, register));
    }
}
pub use crate::plugs::operations::sales::store::Sale;

/// Sale `id` as the API shows it (its discounts per line included, its corrections not), or
/// `None`.
pub async fn sale_document(
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<Option<Sale>, sqlx::Error> {
    crate::plugs::operations::sales::store::load(conn, id, scale).await
}

/// The sale whose receipt number is `number`.
pub async fn sale_numbered(
    conn: &mut PgConnection,
    number: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM sales WHERE receipt_number = $1")
        .bind(number)
        .fetch_optional(conn)
        .await
}

/// Sale `id` with its lines, payments and taxes, or `None`.
pub async fn sold_sale(conn: &mut PgConnection, id: Uuid) -> Result<Option<SoldSale>, sqlx::Error> {
    crate::plugs::operations::sales::store::sold_sale(conn, id).await
}

/// Sales kept in memory at most by [`sold_sale_cached`].
const SOLD_SALE_CACHE: usize = 10_000;

/// Like [`sold_sale`], kept in memory (a sale not found is not kept): a recorded sale never
/// changes (the database refuses it), so the returns of one sale read it once. Forgotten with
/// every cache (a restore, a change of a cached table).
pub async fn sold_sale_cached(state: &AppState, id: Uuid) -> Result<Option<SoldSale>, sqlx::Error> {
    state
        .cache::<Uuid, SoldSale>(SOLD_SALE_CACHE)
        .get_or_read(id, || async {
            let mut conn = state.pool().acquire().await?;
            sold_sale(&mut conn, id).await
        })
        .await
}

/// A correction of a sale as its read lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CorrectionRef {
    pub id: Uuid,
    /// `return` or `void`.
    pub kind: String,
    pub number: String,
    /// Negative.
    #[schema(value_type = String, example = "-2.50")]
    pub total: String,
    pub created_at: DateTime<Utc>,
}

/// What corrected a sale so far.
#[derive(Debug, Clone, Default)]
pub struct Corrections {
    /// Its returns, oldest first.
    pub returns: Vec<CorrectionRef>,
    /// The void that reversed it, if any.
    pub voided_by: Option<Uuid>,
    /// Quantity given back so far per line number (voids included).
    pub returned: HashMap<i32, Decimal>,
}

/// Reads the corrections of a sale (at the currency scale given).
pub type CorrectionsReader =
    for<'a> fn(&'a mut PgConnection, Uuid, u32) -> BoxFuture<'a, Result<Corrections, sqlx::Error>>;

/// What the returns module provides so that a sale's read shows its corrections.
#[derive(Clone, Copy)]
pub struct CorrectionsSource(pub CorrectionsReader);

/// The corrections of sale `id`; none when no module records corrections.
pub async fn corrections(
    state: &AppState,
    conn: &mut PgConnection,
    id: Uuid,
    scale: u32,
) -> Result<Corrections, sqlx::Error> {
    match state.provided::<CorrectionsSource>() {
        Some(source) => (source.0)(conn, id, scale).await,
        None => Ok(Corrections::default()),
    }
}

/// Tax buckets computed the way a sale computes them (see `operations.sales`' pricing rules).
pub use crate::plugs::operations::sales::pricing::{TaxBucket, tax_buckets};

/// 404 `sale.not_found`.
pub fn not_found(id: Uuid) -> crate::core::http::ApiError {
    crate::core::http::ApiError::NotFound {
        code: "sale.not_found",
        detail: format!("No sale with id {id}."),
    }
}

/// The sales of some registers in a period, as a closing reports them.
#[derive(Debug, Clone, Default)]
pub struct SalesPeriod {
    pub count: i64,
    pub net: Decimal,
    pub tax: Decimal,
    pub total: Decimal,
    /// What their discounts took off.
    pub discounts: Decimal,
    pub change_given: Decimal,
    /// (method, payments, amount paid), by method.
    pub by_method: Vec<(String, i64, Decimal)>,
    /// (rate, net, tax, gross), by rate.
    pub by_rate: Vec<(Decimal, Decimal, Decimal, Decimal)>,
    /// Per register: how many, and the first and last receipt numbers (by time).
    pub numbers: Vec<Numbers>,
}

/// The documents of one register in a period.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Numbers {
    pub register_id: Uuid,
    pub count: i64,
    pub first: String,
    pub last: String,
}

/// The sales of `registers` recorded in `[start, end)`.
pub async fn period_totals(
    conn: &mut PgConnection,
    registers: &[Uuid],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<SalesPeriod, sqlx::Error> {
    crate::plugs::operations::sales::store::period_totals(conn, registers, start, end).await
}

/// When the earliest sale of `registers` in `[from, to)` was recorded, if any.
pub async fn first_at(
    conn: &mut PgConnection,
    registers: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    crate::plugs::operations::sales::store::first_at(conn, registers, from, to).await
}

/// A cashier's sale as the suspicious-pattern rules look at it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SaleSeen {
    pub id: Uuid,
    pub total: Decimal,
    pub discount_total: Decimal,
    /// Paid in cash alone, exactly (no change).
    pub exact_cash: bool,
    pub created_at: DateTime<Utc>,
}

/// The sales `cashier` recorded in `[start, end)`, oldest first.
pub async fn sales_of(
    conn: &mut PgConnection,
    cashier: Uuid,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<SaleSeen>, sqlx::Error> {
    crate::plugs::operations::sales::store::sales_of(conn, cashier, start, end).await
}

/// Who recorded a sale in `[start, end)`.
pub async fn active_sellers(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    crate::plugs::operations::sales::store::active_sellers(conn, start, end).await
}

/// For other modules' reports and KPIs: the sales' totals from the report rollups (each drains
/// the rollup queue first), and the permissions reports use.
pub use crate::plugs::operations::sales::READ;
pub use crate::plugs::operations::sales::reports::{
    DASHBOARD, REPORTS_READ, day_totals, payment_totals, sold_per_product, tax_totals,
};
