//! Core's entities in the change feed: the users a till lets log in offline, the business
//! settings it applies, and the business itself.
//!
//! **Users.** Every enabled user holding `administration.devices.offline_use`, with their roles
//! and permissions (what the till lets them do offline) and `offline_pin`: the PIN's offline
//! verifier, an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) under a salt
//! of its own, never the server's password or PIN hash. The till checks a typed PIN with any
//! argon2id implementation against it. A PIN is 4 to 8 digits: whoever holds a till's copy can try
//! them all offline, so a PIN opens only the till while it is offline; a lost till is revoked and
//! its users set new PINs. `null` when the user has no PIN, it is locked, it was set before
//! offline verifiers existed (set it again), or the user may approve others' actions with it
//! (`Module::approver_permissions`): that PIN works online, so no till gets its verifier.
//!
//! **Settings.** Each declared business setting the user may read, with its value (or default);
//! holding `administration.devices.offline_use` counts as holding `administration.settings.read`
//! here, since a till applies them offline. Settings guarded by a permission of their own need it.

use std::collections::BTreeMap;

use futures_util::FutureExt;
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::{SyncEntity, SyncQuery, SyncReader};
use crate::core::devices::OFFLINE_USE;
use crate::core::http::ApiError;
use crate::core::settings::{registry, store};

/// Core's entities.
pub const CORE: &[SyncEntity] = &[
    SyncEntity {
        name: "user",
        permission: None,
        read: |reader, conn, query| users(reader, conn, query).boxed(),
    },
    SyncEntity {
        name: "setting",
        permission: None,
        read: |reader, conn, query| settings(reader, conn, query).boxed(),
    },
    SyncEntity {
        name: "business",
        permission: None,
        read: |reader, conn, query| business(reader, conn, query).boxed(),
    },
];

async fn users(
    reader: SyncReader<'_>,
    conn: &mut PgConnection,
    query: SyncQuery<'_>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let (filter, keys, after, limit) = query.by_uuid("u.id");
    // A PIN that approves others' actions online is never shipped: a till's user could find it.
    let approvers: Vec<&str> = reader
        .state
        .registry()
        .modules()
        .iter()
        .flat_map(|m| m.approver_permissions().iter().copied())
        .collect();
    let rows: Vec<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT u.id::text, json_build_object( \
             'id', u.id, 'username', u.username, 'display_name', u.display_name, \
             'roles', ARRAY(SELECT r.name FROM user_roles ur JOIN roles r ON r.id = ur.role_id WHERE ur.user_id = u.id ORDER BY r.name), \
             'permissions', ARRAY(SELECT DISTINCT rp.permission FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
                                  WHERE ur.user_id = u.id ORDER BY rp.permission), \
             'offline_pin', CASE WHEN p.locked_at IS NULL AND NOT EXISTS ( \
                 SELECT 1 FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
                 WHERE ur.user_id = u.id AND rp.permission = ANY($5)) THEN p.offline_verifier END)::jsonb \
         FROM users u LEFT JOIN user_pins p ON p.user_id = u.id \
         WHERE {filter} AND u.disabled_at IS NULL \
           AND EXISTS (SELECT 1 FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
                       WHERE ur.user_id = u.id AND rp.permission = $3) \
         ORDER BY u.id LIMIT $4"
    )))
    .bind(&keys)
    .bind(after)
    .bind(OFFLINE_USE)
    .bind(limit)
    .bind(&approvers)
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

async fn settings(
    reader: SyncReader<'_>,
    conn: &mut PgConnection,
    query: SyncQuery<'_>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let stored = store::load(conn).await?;
    let scale = stored
        .values
        .get("business.currency_scale")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(2);
    let may_read = |permission: &str| {
        reader.permissions.contains(permission)
            || (permission == registry::READ && reader.permissions.contains(OFFLINE_USE))
    };
    let all: BTreeMap<&str, Value> = reader
        .state
        .settings()
        .iter()
        .filter(|(_, s)| may_read(s.read))
        .map(|(_, s)| {
            let value = stored
                .values
                .get(s.key)
                .cloned()
                .unwrap_or_else(|| s.default.value(scale));
            (s.key, json!({"key": s.key, "value": value}))
        })
        .collect();
    Ok(match query {
        SyncQuery::Keys(keys) => keys
            .iter()
            .filter_map(|k| all.get(k.as_str()).map(|v| (k.clone(), v.clone())))
            .collect(),
        SyncQuery::After { after, limit } => all
            .into_iter()
            .filter(|(k, _)| after.is_none_or(|a| *k > a))
            .take(usize::try_from(limit).unwrap_or(0))
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    })
}

async fn business(
    _reader: SyncReader<'_>,
    conn: &mut PgConnection,
    query: SyncQuery<'_>,
) -> Result<Vec<(String, Value)>, ApiError> {
    let wanted = match query {
        SyncQuery::Keys(keys) => keys.iter().any(|k| k == "1"),
        SyncQuery::After { after, limit } => after.is_none() && limit > 0,
    };
    if !wanted {
        return Ok(Vec::new());
    }
    let row: Option<(String, Value)> = sqlx::query_as(
        "SELECT id::text, json_build_object('name', name, 'currency', currency, 'timezone', timezone)::jsonb FROM business",
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.into_iter().collect())
}
