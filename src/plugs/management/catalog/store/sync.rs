//! What tills cache of the catalog (the change feed, `core::sync`): products with their barcodes,
//! categories and tax classes, archived ones included (a till may still hold them in a basket).
//! Prices are shown with the currency's decimals; the cost price is removed by the feed for
//! readers without its permission (the module's protected field).

use futures_util::FutureExt;
use serde_json::Value;
use sqlx::PgConnection;

use crate::core::http::ApiError;
use crate::core::settings::Business;
use crate::core::sync::{SyncEntity, SyncQuery, SyncReader};

/// The catalog's entities.
pub const ENTITIES: &[SyncEntity] = &[
    SyncEntity {
        name: "product",
        permission: Some(super::super::READ),
        read: |reader, conn, query| products(reader, conn, query).boxed(),
    },
    SyncEntity {
        name: "category",
        permission: Some(super::super::READ),
        read: |_, conn, query| categories(conn, query).boxed(),
    },
    SyncEntity {
        name: "tax_class",
        permission: Some(super::super::READ),
        read: |_, conn, query| tax_classes(conn, query).boxed(),
    },
];

async fn products(
    reader: SyncReader<'_>,
    conn: &mut PgConnection,
    query: SyncQuery<'_>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let scale = Business::cached(reader.state)
        .await?
        .map_or(2, |b| b.currency_scale);
    let (filter, keys, after, limit) = query.by_uuid("p.id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT p.id::text, jsonb_build_object( \
             'id', p.id, 'sku', p.sku, 'name', p.name, 'price', round(p.price, $4)::text, \
             'cost_price', p.cost_price::text, 'tax_class_id', p.tax_class_id, 'category_id', p.category_id, \
             'track_stock', p.track_stock, 'active', p.active, 'archived_at', p.archived_at, 'version', p.version, \
             'barcodes', ARRAY(SELECT b.barcode FROM product_barcodes b WHERE b.product_id = p.id ORDER BY b.barcode)) \
         FROM products p WHERE {filter} ORDER BY p.id LIMIT $3"
    )))
    .bind(keys)
    .bind(after)
    .bind(limit)
    .bind(i32::try_from(scale).unwrap_or(2))
    .fetch_all(conn)
    .await?)
}

async fn categories(
    conn: &mut PgConnection,
    query: SyncQuery<'_>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let (filter, keys, after, limit) = query.by_uuid("id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id::text, jsonb_build_object('id', id, 'name', name, 'parent_id', parent_id, \
                'archived_at', archived_at, 'version', version) \
         FROM categories WHERE {filter} ORDER BY id LIMIT $3"
    )))
    .bind(keys)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

async fn tax_classes(
    conn: &mut PgConnection,
    query: SyncQuery<'_>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let (filter, keys, after, limit) = query.by_uuid("id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id::text, jsonb_build_object('id', id, 'name', name, 'rate', rate::text, \
                'archived_at', archived_at, 'version', version) \
         FROM tax_classes WHERE {filter} ORDER BY id LIMIT $3"
    )))
    .bind(keys)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
