//! `tax_classes`.

use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// A tax class.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct TaxClass {
    pub id: Uuid,
    #[schema(example = "Standard")]
    pub name: String,
    /// A fraction as a decimal string: `"0.19"` is 19 %.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = String, example = "0.19")]
    pub rate: Decimal,
    pub version: i64,
}

/// Every live tax class, by name.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<TaxClass>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, rate, version FROM tax_classes WHERE archived_at IS NULL ORDER BY name",
    )
    .fetch_all(conn)
    .await
}

/// Inserts a tax class (names are unique: `tax_classes_name_key`).
pub async fn insert(
    tx: &mut AuditedTx,
    id: Uuid,
    name: &str,
    rate: Decimal,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tax_classes (id, name, rate) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(name)
        .bind(rate)
        .execute(&mut **tx)
        .await
        .map(drop)
}
