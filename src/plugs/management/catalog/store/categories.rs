//! `categories`.

use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// A category.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Category {
    pub id: Uuid,
    pub name: String,
    /// `null` for a top-level category.
    pub parent_id: Option<Uuid>,
    pub version: i64,
}

/// Live category `id`.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Category>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, parent_id, version FROM categories WHERE id = $1 AND archived_at IS NULL",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Every live category, by name.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<Category>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, parent_id, version FROM categories WHERE archived_at IS NULL ORDER BY name, id",
    )
    .fetch_all(conn)
    .await
}

/// Inserts `category` (its siblings' names are unique: `categories_name_key`).
pub async fn insert(tx: &mut AuditedTx, category: &Category) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO categories (id, name, parent_id) VALUES ($1, $2, $3)")
        .bind(category.id)
        .bind(&category.name)
        .bind(category.parent_id)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Renames or moves `category` (its version moves on by one).
pub async fn update(tx: &mut AuditedTx, category: &Category) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE categories SET name = $2, parent_id = $3, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(category.id)
    .bind(&category.name)
    .bind(category.parent_id)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Serialises moves until the transaction ends: two concurrent moves could each be acyclic alone
/// and form a cycle together.
pub async fn lock_tree(tx: &mut AuditedTx) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('management.catalog.categories'))")
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// Category `id` and its ancestors up to the top.
pub async fn ancestors(conn: &mut PgConnection, id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE up(id, parent_id) AS (SELECT id, parent_id FROM categories WHERE id = $1 \
         UNION ALL SELECT c.id, c.parent_id FROM categories c JOIN up ON c.id = up.parent_id) SELECT id FROM up",
    )
    .bind(id)
    .fetch_all(conn)
    .await
}
