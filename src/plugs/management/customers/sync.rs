//! What tills cache of customers (the change feed, `core::sync`): live customers (deleted and
//! erased ones are tombstones) and the price lists with their rules (deleted ones are tombstones),
//! so a till prices a customer's basket offline as the server would.

use futures_util::FutureExt;
use serde_json::Value;
use sqlx::PgConnection;

use crate::core::http::ApiError;
use crate::core::sync::{SyncEntity, SyncQuery};

/// The module's entities.
pub const ENTITIES: &[SyncEntity] = &[
    SyncEntity {
        name: "customer",
        permission: Some(super::READ),
        read: |_, conn, query| customers(conn, query).boxed(),
    },
    SyncEntity {
        name: "price_list",
        permission: Some(super::READ),
        read: |_, conn, query| price_lists(conn, query).boxed(),
    },
];

async fn customers(
    conn: &mut PgConnection,
    query: SyncQuery<'_>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let (filter, keys, after, limit) = query.by_uuid("id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id::text, jsonb_build_object('id', id, 'name', name, 'email', email, 'phone', phone, \
                'tax_id', tax_id, 'address', address, 'customer_group', customer_group, 'notes', notes, \
                'marketing_consent', marketing_consent, 'version', version) \
         FROM customers WHERE {filter} AND deleted_at IS NULL AND erased_at IS NULL ORDER BY id LIMIT $3"
    )))
    .bind(keys)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

async fn price_lists(
    conn: &mut PgConnection,
    query: SyncQuery<'_>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let (filter, keys, after, limit) = query.by_uuid("l.id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT l.id::text, jsonb_build_object('id', l.id, 'name', l.name, 'customer_group', l.customer_group, \
                'valid_from', l.valid_from, 'valid_to', l.valid_to, 'version', l.version, \
                'rules', COALESCE((SELECT jsonb_agg(jsonb_build_object('product_id', r.product_id, \
                          'category_id', r.category_id, 'kind', r.kind, 'value', r.value::text) ORDER BY r.id) \
                          FROM price_list_rules r WHERE r.price_list_id = l.id), '[]'::jsonb)) \
         FROM price_lists l WHERE {filter} AND l.deleted_at IS NULL ORDER BY l.id LIMIT $3"
    )))
    .bind(keys)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
