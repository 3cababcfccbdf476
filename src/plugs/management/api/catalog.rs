//! `management.catalog` for other plugs: the products a sale sells.

use std::collections::HashMap;

use uuid::Uuid;

use crate::core::state::AppState;
use crate::plugs::management::catalog::store::products;

pub use crate::plugs::management::catalog::store::products::SaleProduct;

/// Products kept in memory at most (those sold since the catalog last changed).
const PRODUCT_CACHE: usize = 100_000;

/// The products with these ids (archived ones are not found), kept in memory until a product or
/// tax class changes (see [`crate::core::db::changes`]).
pub async fn products_for_sale(
    state: &AppState,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, SaleProduct>, sqlx::Error> {
    let cache = state.cache::<Uuid, SaleProduct>(PRODUCT_CACHE);
    let mut found = HashMap::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        match cache.get(id) {
            Some(product) => {
                found.insert(*id, product);
            }
            None => missing.push(*id),
        }
    }
    if missing.is_empty() {
        return Ok(found);
    }
    let stamp = cache.stamp();
    let mut conn = state.pool().acquire().await?;
    let read = products::for_sale(&mut conn, &missing).await?;
    for product in read {
        cache.keep(stamp, product.id, product.clone());
        found.insert(product.id, product);
    }
    Ok(found)
}

/// The products with these ids, archived ones too, each with whether it is archived (what an
/// offline till sold may have been archived since; read from the database, not cached).
pub async fn products_for_push(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (SaleProduct, bool)>, sqlx::Error> {
    Ok(products::for_push(conn, ids)
        .await?
        .into_iter()
        .map(|(p, archived)| (p.id, (p, archived)))
        .collect())
}

/// Does live product `id` track stock? `None` when there is no such product (archived ones are not).
pub async fn tracks_stock(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<Option<bool>, sqlx::Error> {
    products::tracks_stock(conn, id).await
}

pub use crate::plugs::management::catalog::store::products::StockFacts;

/// The products among `ids` (archived ones flagged) with their names, category, cost and stock
/// tracking.
pub async fn stock_facts(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
) -> Result<Vec<StockFacts>, sqlx::Error> {
    products::stock_facts(conn, ids).await
}

/// The live products that `barcodes` identify, as (barcode, product id).
pub async fn ids_by_barcode(
    conn: &mut sqlx::PgConnection,
    barcodes: &[String],
) -> Result<Vec<(String, Uuid)>, sqlx::Error> {
    products::ids_by_barcode(conn, barcodes).await
}

/// Who may see cost prices (the field permission of `cost_price`).
pub const COST_PRICE_READ: &str = crate::plugs::management::catalog::COST_PRICE_READ;

/// Sets a product's cost price (by a goods receipt).
pub async fn set_cost_price(
    tx: &mut crate::core::audit::AuditedTx,
    id: Uuid,
    cost: rust_decimal::Decimal,
) -> Result<(), sqlx::Error> {
    products::set_cost_price(tx, id, cost).await
}

/// Category `id` and every category below it.
pub async fn category_tree(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<Vec<Uuid>, sqlx::Error> {
    products::category_tree(conn, id).await
}

/// For each of `roots`, itself and every category below it, with its distance from the root, as
/// (root, category, distance).
pub async fn category_tree_depths(
    conn: &mut sqlx::PgConnection,
    roots: &[Uuid],
) -> Result<Vec<(Uuid, Uuid, i32)>, sqlx::Error> {
    products::category_tree_depths(conn, roots).await
}

/// For reports: the products in any of `categories`.
pub async fn products_in_categories(
    conn: &mut sqlx::PgConnection,
    categories: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    products::in_categories(conn, categories).await
}

/// For reports: the category of each of `products`.
pub async fn categories_of(
    conn: &mut sqlx::PgConnection,
    products: &[Uuid],
) -> Result<Vec<(Uuid, Option<Uuid>)>, sqlx::Error> {
    products::categories_of(conn, products).await
}

/// For reports: `sku name` of each of `products`.
pub async fn product_labels(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    products::labels(conn, ids).await
}

/// For reports: the name of each of `categories`.
pub async fn category_labels(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    products::category_labels(conn, ids).await
}

/// For reports: the cost price of each of `products` that has one (stock valuation).
pub async fn cost_prices(
    conn: &mut sqlx::PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, rust_decimal::Decimal)>, sqlx::Error> {
    products::cost_prices(conn, ids).await
}
