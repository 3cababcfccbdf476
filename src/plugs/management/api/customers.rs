//! `management.customers` for other plugs: who a sale or return names, the prices of their
//! customer group, and the documents that name a customer (which sales and returns provide, since
//! customers cannot depend on them: they depend on customers).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::state::AppState;
use crate::plugs::management::customers::{prices, store};

pub use crate::plugs::management::customers::rules::{Applied, AppliedRule, GroupPrices};

/// Who may read customers (their personal data).
pub const READ: &str = crate::plugs::management::customers::READ;

/// Group prices kept in memory at most (one entry per customer group).
const GROUP_CACHE: usize = 1_000;

/// The group of live customer `id`: `None` when there is no such customer (deleted and erased
/// ones are not), `Some(None)` when they belong to no group.
pub async fn group_of(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Option<String>>, sqlx::Error> {
    store::group_of(conn, id).await
}

/// The price rules of customer group `group`, kept in memory until a price list or a category
/// changes (see [`crate::core::db::changes`]).
pub async fn group_prices(state: &AppState, group: &str) -> Result<Arc<GroupPrices>, sqlx::Error> {
    let cache = state.cache::<String, Arc<GroupPrices>>(GROUP_CACHE);
    let found = cache
        .get_or_read(group.to_owned(), || async {
            let mut conn = state.pool().acquire().await?;
            prices::read(&mut conn, group)
                .await
                .map(|p| Some(Arc::new(p)))
        })
        .await?;
    Ok(found.unwrap_or_default())
}

/// A sale or return that names a customer, as their history and their data export list it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CustomerDocument {
    /// `sale`, `return` or `void`.
    pub kind: String,
    pub id: Uuid,
    pub number: String,
    pub at: DateTime<Utc>,
    pub currency: String,
    /// Negative for returns and voids.
    #[schema(value_type = String, example = "12.50")]
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    /// The lines: product, name, quantity, unit price and total.
    #[schema(value_type = Vec<Object>)]
    pub lines: Value,
}

/// Reads a customer's documents before position `(at, id)` (none: from the newest), newest
/// first, at most `limit`.
pub type DocumentsReader = for<'a> fn(
    &'a mut PgConnection,
    Uuid,
    Option<(DateTime<Utc>, Uuid)>,
    i64,
) -> BoxFuture<'a, Result<Vec<CustomerDocument>, sqlx::Error>>;

/// Reads each customer's latest document time, for every customer who has one.
pub type LatestReader =
    for<'a> fn(
        &'a mut PgConnection,
    ) -> BoxFuture<'a, Result<Vec<(Uuid, DateTime<Utc>)>, sqlx::Error>>;

/// One kind of document that names customers.
#[derive(Clone, Copy)]
pub struct DocumentSource {
    pub documents: DocumentsReader,
    pub latest: LatestReader,
}

/// What the sales module provides: the sales that name a customer.
#[derive(Clone, Copy)]
pub struct SalesOfCustomers(pub DocumentSource);

/// What the returns module provides: the returns and voids that name a customer.
#[derive(Clone, Copy)]
pub struct ReturnsOfCustomers(pub DocumentSource);

/// The sources provided (an error when one is missing: a history that silently left out the
/// sales would mislead, and an export would be incomplete).
pub fn document_sources(state: &AppState) -> Result<[DocumentSource; 2], sqlx::Error> {
    let missing = |what: &str| {
        sqlx::Error::Configuration(
            format!("no module provides the {what} that name a customer").into(),
        )
    };
    let sales = state
        .provided::<SalesOfCustomers>()
        .ok_or_else(|| missing("sales"))?;
    let returns = state
        .provided::<ReturnsOfCustomers>()
        .ok_or_else(|| missing("returns"))?;
    Ok([sales.0, returns.0])
}

/// The date a customer's price lists are valid on for a sale at `at`: the calendar date in the
/// business's timezone.
pub fn price_date(
    business: &crate::core::settings::Business,
    at: DateTime<Utc>,
) -> chrono::NaiveDate {
    at.with_timezone(&business.timezone).date_naive()
}

/// A customer as an invoice addresses them: name, address and tax id ("erased customer" and
/// nothing else once erased).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InvoiceCustomer {
    pub name: String,
    pub address: Option<String>,
    pub tax_id: Option<String>,
}

/// Customer `id` as an invoice addresses them (deleted and erased ones too: their documents
/// still name them), read when the invoice is printed and never stored with it.
pub async fn for_invoice(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<InvoiceCustomer>, sqlx::Error> {
    store::for_invoice(conn, id).await
}

/// For reports: the name of each of `ids` (`erased customer` once erased).
pub async fn customer_names(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    crate::plugs::management::customers::store::names(conn, ids).await
}
