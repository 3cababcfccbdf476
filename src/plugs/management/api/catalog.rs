//! `management.catalog` for other plugs: the products a sale sells.

use std::collections::HashMap;

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::core::state::AppState;

/// Products kept in memory at most (those sold since the catalog last changed).
const PRODUCT_CACHE: usize = 100_000;

/// A product as a sale needs it: price, tax rate, stock tracking.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SaleProduct {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub price: Decimal,
    pub tax_class_id: Uuid,
    /// The tax class's rate as a fraction (0.19 is 19 %).
    pub tax_rate: Decimal,
    pub track_stock: bool,
    pub active: bool,
}

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
    let read: Vec<SaleProduct> = sqlx::query_as(
        "SELECT p.id, p.sku, p.name, p.price, p.tax_class_id, t.rate AS tax_rate, p.track_stock, p.active \
         FROM products p JOIN tax_classes t ON t.id = p.tax_class_id \
         WHERE p.id = ANY($1) AND p.archived_at IS NULL",
    )
    .bind(&missing)
    .fetch_all(state.pool())
    .await?;
    for product in read {
        cache.keep(stamp, product.id, product.clone());
        found.insert(product.id, product);
    }
    Ok(found)
}

/// Does live product `id` track stock? `None` when there is no such product (archived ones are not).
pub async fn tracks_stock(
    conn: &mut sqlx::PgConnection,
    id: Uuid,
) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT track_stock FROM products WHERE id = $1 AND archived_at IS NULL")
        .bind(id)
        .fetch_optional(conn)
        .await
}
