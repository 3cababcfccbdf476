//! `management.catalog` for other plugs: the products a sale sells.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

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

/// The products with these ids (archived ones are not found).
pub async fn products_for_sale(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<SaleProduct>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.sku, p.name, p.price, p.tax_class_id, t.rate AS tax_rate, p.track_stock, p.active \
         FROM products p JOIN tax_classes t ON t.id = p.tax_class_id \
         WHERE p.id = ANY($1) AND p.archived_at IS NULL",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}
