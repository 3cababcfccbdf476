//! The change feed enrolled tills keep their offline copy with (`GET /api/v1/sync/changes`).
//!
//! What a till caches is a set of *entities* (products, customers, users...), each declared by the
//! module that owns its table (`Module::sync_entities`; core's own are in [`entities`]). A statement
//! that changes one adds a row to `sync_outbox` in its own transaction (row triggers, migration
//! 0035): the entity and its key, never its values. The feed serves, for each outbox row, the
//! entity as it is when the feed is read (an upsert), or a tombstone when it is gone or no longer
//! for tills (deleted, erased, disabled).
//!
//! **No change is skipped.** A position is `(xid, id)`: the writing transaction's id and a
//! sequence number. A transaction that took its id earlier may commit later than one with a
//! larger id, so the feed serves only rows whose transaction is older than the oldest transaction
//! still running (`pg_snapshot_xmin(pg_current_snapshot())`, the *horizon*): every transaction
//! below it has ended, so no row can appear below a position once the feed has served past it.
//! A transaction still running holds the horizon back (its changes, and any after it, wait for
//! its commit); nothing is lost.
//!
//! **The snapshot.** A first call (no cursor) notes the horizon `H`, then serves every entity
//! page by page; its cursor then moves to `(H, 0)`. Whatever changed after `H` was taken is in
//! the outbox at or above it and is served again; changes that ended below it are in the pages.
//!
//! **Pruning.** Rows behind every device's confirmed position (and behind the horizon) go; rows
//! older than `sync.outbox_retention_days` go even if a device has not read them: that device's
//! cursor is then below the pruned mark and it must take a new snapshot (410
//! `sync.cursor_expired`). A cursor is also bound to the permissions it was served under (what
//! fields and entities it holds): when they changed, the same 410 asks for a new snapshot.

pub mod conflicts;
pub mod entities;
pub mod http;
pub mod push;

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use utoipa::ToSchema;

use crate::core::audit::query::ProtectedField;
use crate::core::auth::context::Authenticated;
use crate::core::http::ApiError;
use crate::core::state::AppState;

/// What one read of an entity asks for.
#[derive(Debug, Clone, Copy)]
pub enum SyncQuery<'a> {
    /// These keys (the feed's changes): those that exist and are for tills come back.
    Keys(&'a [String]),
    /// Up to `limit` entities after key `after` (the snapshot), by key.
    After { after: Option<&'a str>, limit: i64 },
}

impl SyncQuery<'_> {
    /// For an entity keyed by the uuid column `column`: the condition over `$1` (the keys, a
    /// `uuid[]`) and `$2` (the key to start after), and the values to bind as `$1`, `$2` and the
    /// `LIMIT` (`$3`). Keys that are not uuids name nothing.
    pub fn by_uuid(&self, column: &str) -> (String, Vec<uuid::Uuid>, Option<uuid::Uuid>, i64) {
        match *self {
            SyncQuery::Keys(keys) => (
                format!("{column} = ANY($1::uuid[]) AND $2::uuid IS NULL"),
                keys.iter().filter_map(|k| k.parse().ok()).collect(),
                None,
                i64::MAX,
            ),
            SyncQuery::After { after, limit } => (
                format!("cardinality($1::uuid[]) = 0 AND ($2::uuid IS NULL OR {column} > $2)"),
                Vec::new(),
                after.and_then(|a| a.parse().ok()),
                limit,
            ),
        }
    }
}

/// Who reads: what an entity's read may need beyond its query.
#[derive(Clone, Copy)]
pub struct SyncReader<'a> {
    pub state: &'a AppState,
    /// The reading user's permissions (protected fields are removed by the feed itself).
    pub permissions: &'a BTreeSet<String>,
}

/// Reads entities as tills get them: `(key, value)` pairs, by key for [`SyncQuery::After`].
pub type SyncRead = for<'a> fn(
    SyncReader<'a>,
    &'a mut PgConnection,
    SyncQuery<'a>,
) -> BoxFuture<'a, Result<Vec<(String, Value)>, ApiError>>;

/// One entity tills cache.
#[derive(Debug, Clone, Copy)]
pub struct SyncEntity {
    /// Its name in the feed and in `sync_outbox.entity` (the migration's triggers use it).
    pub name: &'static str,
    /// Holding it is needed to receive this entity at all (`None`: every till user).
    pub permission: Option<&'static str>,
    /// Fields hidden from readers without their permission: the owning module's protected
    /// fields of this entity name (`Module::protected_fields`) are left out of every value.
    pub read: SyncRead,
}

/// One change in the feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncItem {
    /// `product`, `customer`, `user`...
    pub entity: String,
    /// The entity's key (an id, or a setting's key).
    pub key: String,
    /// `upsert` (store `data` under the key) or `delete` (forget the key).
    pub op: &'static str,
    /// The entity as it is now (upserts only).
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A page of the feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SyncPage {
    pub items: Vec<SyncItem>,
    /// Send it back as `cursor` next time (always present: the feed has no end).
    pub next_cursor: String,
    /// `true`: more is waiting, call again at once; `false`: the till is up to date (poll later).
    pub more: bool,
    /// `true` while the answer is part of a first snapshot (the till may show progress).
    pub snapshot: bool,
    /// `true`: committed changes wait behind a transaction that is still running (they are
    /// served once it ends, in order); poll again in a moment.
    pub held_back: bool,
}

/// The default and largest page.
pub const DEFAULT_LIMIT: i64 = 500;
pub const MAX_LIMIT: i64 = 2000;

/// Where a till is in the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cursor {
    /// In the snapshot taken at horizon `horizon`: entity `entity` after key `after`.
    Snapshot {
        horizon: u64,
        entity: String,
        after: Option<String>,
    },
    /// Past every change up to position `(xid, id)`.
    Changes { xid: u64, id: i64 },
}

impl Cursor {
    fn encode(&self, digest: &str) -> String {
        match self {
            Cursor::Snapshot {
                horizon,
                entity,
                after,
            } => format!(
                "s.{horizon}.{entity}.{}.{digest}",
                hex::encode(after.as_deref().unwrap_or_default())
            ),
            Cursor::Changes { xid, id } => format!("c.{xid}.{id}.{digest}"),
        }
    }

    /// The cursor and the permissions digest it was served under; `None` when malformed.
    fn decode(text: &str) -> Option<(Cursor, &str)> {
        let parts: Vec<&str> = text.split('.').collect();
        match parts.as_slice() {
            ["s", horizon, entity, after, digest]
                if !entity.is_empty()
                    && entity.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                let after = hex::decode(after).ok()?;
                let after = String::from_utf8(after).ok()?;
                Some((
                    Cursor::Snapshot {
                        horizon: horizon.parse().ok()?,
                        entity: (*entity).to_owned(),
                        after: (!after.is_empty()).then_some(after),
                    },
                    digest,
                ))
            }
            ["c", xid, id, digest] => Some((
                Cursor::Changes {
                    xid: xid.parse().ok()?,
                    id: id.parse().ok().filter(|id: &i64| *id >= 0)?,
                },
                digest,
            )),
            _ => None,
        }
    }

    /// The outbox position the till holds everything up to.
    fn position(&self) -> (u64, i64) {
        match self {
            Cursor::Snapshot { horizon, .. } => (*horizon, 0),
            Cursor::Changes { xid, id } => (*xid, *id),
        }
    }
}

/// The short digest a cursor is bound to: the database's timeline (`sync_state.epoch`), the
/// reader, their permissions and what they receive (entities and hidden fields, which move when a
/// module is enabled or disabled). Any change asks for a new snapshot.
fn reader_digest(
    epoch: &str,
    caller: &Authenticated,
    visible: &[(SyncEntity, Vec<&'static str>)],
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(epoch.as_bytes());
    hasher.update(caller.user_id.as_bytes());
    for p in &caller.permissions {
        hasher.update(p.as_bytes());
        hasher.update([0]);
    }
    for (entity, hidden) in visible {
        hasher.update(entity.name.as_bytes());
        hasher.update([1]);
        for field in hidden {
            hasher.update(field.as_bytes());
            hasher.update([2]);
        }
    }
    hex::encode(&hasher.finalize()[..6])
}

/// The entities `caller` receives, by name: core's and the enabled modules', with the fields each
/// hides from them.
fn visible_entities(
    state: &AppState,
    caller: &Authenticated,
) -> Vec<(SyncEntity, Vec<&'static str>)> {
    let registry = state.registry();
    let mut out: Vec<(SyncEntity, Vec<&'static str>)> =
        entities::CORE.iter().map(|e| (*e, Vec::new())).collect();
    for module in registry.modules() {
        if !state.modules().is_enabled(module.id()) {
            continue;
        }
        let protected: &[ProtectedField] = module.protected_fields();
        for entity in module.sync_entities() {
            let hidden = protected
                .iter()
                .filter(|f| f.entity == entity.name && !caller.has(f.permission))
                .map(|f| f.field)
                .collect();
            out.push((*entity, hidden));
        }
    }
    out.retain(|(e, _)| e.permission.is_none_or(|p| caller.has(p)));
    out.sort_by_key(|(e, _)| e.name);
    out
}

fn shown(mut value: Value, hidden: &[&str]) -> Value {
    if let Some(object) = value.as_object_mut() {
        for field in hidden {
            object.remove(*field);
        }
    }
    value
}

/// 410 `sync.cursor_expired`.
fn expired(why: &str) -> ApiError {
    ApiError::Gone {
        code: "sync.cursor_expired",
        detail: format!(
            "{why}: take a new snapshot (call without a cursor) and replace the till's copy with it."
        ),
    }
}

/// The horizon: every transaction below it has ended.
async fn horizon(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let text: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(conn)
        .await?;
    Ok(text.parse().unwrap_or(0))
}

/// The database's timeline and whether `position` is below what was pruned.
async fn state_of(
    conn: &mut PgConnection,
    (xid, id): (u64, i64),
) -> Result<(String, bool), sqlx::Error> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "SELECT epoch::text, (pruned_xid, pruned_id) > ($1::text::xid8, $2) FROM sync_state",
    )
    .bind(xid.to_string())
    .bind(id)
    .fetch_optional(conn)
    .await?;
    Ok(row.unwrap_or_default())
}

/// Gives the database a new timeline: every till's cursor is refused (410) and it takes a new
/// snapshot. A restore calls it in the restored database (its outbox and positions describe the
/// past the backup was taken in, not what the tills hold).
pub async fn new_epoch(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sync_state SET epoch = gen_random_uuid()")
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE device_activity SET sync_xid = NULL, sync_id = NULL")
        .execute(conn)
        .await
        .map(drop)
}

/// One page of the feed for `caller` from `cursor` (`None`: start a snapshot).
pub async fn page(
    state: &AppState,
    caller: &Authenticated,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(SyncPage, (u64, i64)), ApiError> {
    let visible = visible_entities(state, caller);
    let mut conn = state.pool().acquire().await?;
    let (cursor, served_under) = match cursor {
        None => {
            let horizon = horizon(&mut conn).await?;
            let first = Cursor::Snapshot {
                horizon,
                entity: visible
                    .first()
                    .map(|(e, _)| e.name)
                    .unwrap_or_default()
                    .to_owned(),
                after: None,
            };
            (first, None)
        }
        Some(text) => {
            let (cursor, served_under) =
                Cursor::decode(text).ok_or_else(|| ApiError::Unprocessable {
                    code: "sync.cursor_invalid",
                    detail: "This is not a cursor the feed gave; start again without one."
                        .to_owned(),
                })?;
            (cursor, Some(served_under.to_owned()))
        }
    };
    let (epoch, pruned) = state_of(&mut conn, cursor.position()).await?;
    let digest = reader_digest(&epoch, caller, &visible);
    // A first call needs neither check: its snapshot starts at the horizon, which nothing pruned
    // is above.
    if let Some(served_under) = &served_under {
        if *served_under != digest {
            return Err(expired(
                "This cursor was served to another user, under other permissions, or before a restore",
            ));
        }
        if pruned {
            return Err(expired(
                "The changes after this cursor were pruned (the till was away longer than sync.outbox_retention_days)",
            ));
        }
    }
    let position = cursor.position();
    let reader = SyncReader {
        state,
        permissions: &caller.permissions,
    };
    let page = match cursor {
        Cursor::Snapshot {
            horizon,
            entity,
            after,
        } => {
            snapshot(
                reader, &mut conn, &visible, horizon, &entity, after, limit, &digest,
            )
            .await?
        }
        Cursor::Changes { xid, id } => {
            changes(reader, &mut conn, &visible, (xid, id), limit, &digest).await?
        }
    };
    Ok((page, position))
}

/// Snapshot pages: every visible entity in name order, each by key.
#[allow(clippy::too_many_arguments)]
async fn snapshot(
    reader: SyncReader<'_>,
    conn: &mut PgConnection,
    visible: &[(SyncEntity, Vec<&'static str>)],
    horizon: u64,
    from: &str,
    mut after: Option<String>,
    limit: i64,
    digest: &str,
) -> Result<SyncPage, ApiError> {
    let mut items = Vec::new();
    for (entity, hidden) in visible.iter().filter(|(e, _)| e.name >= from) {
        if entity.name != from {
            after = None;
        }
        let wanted = limit - items.len() as i64;
        let rows = (entity.read)(
            reader,
            conn,
            SyncQuery::After {
                after: after.as_deref(),
                limit: wanted,
            },
        )
        .await?;
        let full = rows.len() as i64 == wanted;
        let last = rows.last().map(|(key, _)| key.clone());
        items.extend(rows.into_iter().map(|(key, value)| SyncItem {
            entity: entity.name.to_owned(),
            key,
            op: "upsert",
            data: Some(shown(value, hidden)),
        }));
        if full {
            let next = Cursor::Snapshot {
                horizon,
                entity: entity.name.to_owned(),
                after: last,
            };
            return Ok(SyncPage {
                items,
                next_cursor: next.encode(digest),
                more: true,
                snapshot: true,
                held_back: false,
            });
        }
    }
    Ok(SyncPage {
        items,
        next_cursor: Cursor::Changes {
            xid: horizon,
            id: 0,
        }
        .encode(digest),
        more: true,
        snapshot: true,
        held_back: false,
    })
}

/// Change pages: outbox rows after `from`, below the horizon, in position order; each entity
/// served once per page (at its last position), as it is now.
async fn changes(
    reader: SyncReader<'_>,
    conn: &mut PgConnection,
    visible: &[(SyncEntity, Vec<&'static str>)],
    from: (u64, i64),
    limit: i64,
    digest: &str,
) -> Result<SyncPage, ApiError> {
    // One horizon for the page and for what it says is held back: every transaction below it
    // has ended (and stays ended), so the rows below it are all there is below it.
    let horizon = horizon(&mut *conn).await?.to_string();
    let rows: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT xid::text, id, entity, key FROM sync_outbox \
         WHERE (xid, id) > ($1::text::xid8, $2) AND xid < $4::text::xid8 \
         ORDER BY xid, id LIMIT $3",
    )
    .bind(from.0.to_string())
    .bind(from.1)
    .bind(limit)
    .bind(&horizon)
    .fetch_all(&mut *conn)
    .await?;
    let more = rows.len() as i64 == limit;
    let next = rows
        .last()
        .map(|(xid, id, _, _)| (xid.parse().unwrap_or(from.0), *id))
        .unwrap_or(from);
    // The last position of each (entity, key): that is where it is served.
    let mut last: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, (_, _, entity, key)) in rows.iter().enumerate() {
        last.insert((entity.as_str(), key.as_str()), i);
    }
    // The current value of each served row, by its index in `rows`.
    let mut current: HashMap<usize, Value> = HashMap::new();
    for (entity, hidden) in visible {
        let keys: Vec<String> = last
            .keys()
            .filter(|(e, _)| *e == entity.name)
            .map(|(_, k)| (*k).to_owned())
            .collect();
        if keys.is_empty() {
            continue;
        }
        for (key, value) in (entity.read)(reader, conn, SyncQuery::Keys(&keys)).await? {
            if let Some(&i) = last.get(&(entity.name, key.as_str())) {
                current.insert(i, shown(value, hidden));
            }
        }
    }
    let held_back = !more
        && sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sync_outbox WHERE (xid, id) > ($1::text::xid8, $2) \
                            AND xid >= $3::text::xid8)",
        )
        .bind(next.0.to_string())
        .bind(next.1)
        .bind(&horizon)
        .fetch_one(&mut *conn)
        .await?;
    let mut items = Vec::new();
    for (i, (_, _, entity, key)) in rows.iter().enumerate() {
        let here = (entity.as_str(), key.as_str());
        if last.get(&here) != Some(&i) || !visible.iter().any(|(e, _)| e.name == entity) {
            continue;
        }
        let data = current.remove(&i);
        items.push(SyncItem {
            entity: entity.clone(),
            key: key.clone(),
            op: if data.is_some() { "upsert" } else { "delete" },
            data,
        });
    }
    Ok(SyncPage {
        items,
        next_cursor: Cursor::Changes {
            xid: next.0,
            id: next.1,
        }
        .encode(digest),
        more,
        snapshot: false,
        held_back,
    })
}

/// Notes how far `device` has confirmed the feed (the cursor it sent), so pruning keeps what it
/// has not read yet.
pub async fn confirm(
    conn: &mut PgConnection,
    device: uuid::Uuid,
    (xid, id): (u64, i64),
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO device_activity AS a (device_id, sync_xid, sync_id, sync_at) VALUES ($1, $2::text::xid8, $3, $4) \
         ON CONFLICT (device_id) DO UPDATE SET sync_xid = EXCLUDED.sync_xid, sync_id = EXCLUDED.sync_id, sync_at = EXCLUDED.sync_at",
    )
    .bind(device)
    .bind(xid.to_string())
    .bind(id)
    .bind(now)
    .execute(conn)
    .await
    .map(drop)
}

/// Rows younger than this stay even behind every device: a till whose first snapshot page is
/// being served has not confirmed its position yet.
const PRUNE_GRACE: Duration = Duration::hours(1);

/// Prunes the outbox: rows behind every device that reads the feed and behind the horizon (once
/// an hour old), and rows older than `retention` whoever has not read them (their devices must
/// take a new snapshot). Returns how many went.
pub async fn prune(
    conn: &mut PgConnection,
    retention: Duration,
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let horizon = (horizon(&mut *conn).await?, 0);
    let slowest: Option<(String, i64)> = sqlx::query_as(
        "SELECT a.sync_xid::text, a.sync_id FROM device_activity a JOIN devices d ON d.id = a.device_id \
         WHERE d.revoked_at IS NULL AND a.sync_xid IS NOT NULL ORDER BY a.sync_xid, a.sync_id LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let behind = slowest
        .map(|(xid, id)| (xid.parse().unwrap_or(0), id))
        .map_or(horizon, |device| device.min(horizon));
    let (count, top_xid, top_id): (i64, Option<String>, Option<i64>) = sqlx::query_as(
        "WITH gone AS (DELETE FROM sync_outbox \
                        WHERE ((xid, id) <= ($1::text::xid8, $2) AND created_at < $3) OR created_at < $4 \
                        RETURNING xid, id) \
         SELECT (SELECT count(*) FROM gone), top.xid::text, top.id \
         FROM (SELECT 1) one LEFT JOIN (SELECT xid, id FROM gone ORDER BY xid DESC, id DESC LIMIT 1) top ON true",
    )
    .bind(behind.0.to_string())
    .bind(behind.1)
    .bind(now - PRUNE_GRACE)
    .bind(now - retention)
    .fetch_one(&mut *conn)
    .await?;
    if let (Some(xid), Some(id)) = (top_xid, top_id) {
        sqlx::query(
            "UPDATE sync_state SET pruned_xid = $1::text::xid8, pruned_id = $2, pruned_at = $3 \
             WHERE (pruned_xid, pruned_id) < ($1::text::xid8, $2)",
        )
        .bind(xid)
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(u64::try_from(count).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_are_not() {
        let s = Cursor::Snapshot {
            horizon: 912,
            entity: "product".to_owned(),
            after: Some("0190-ab".to_owned()),
        };
        let text = s.encode("abc123");
        assert_eq!(Cursor::decode(&text), Some((s, "abc123")));
        let first = Cursor::Snapshot {
            horizon: 5,
            entity: "category".to_owned(),
            after: None,
        };
        assert_eq!(Cursor::decode(&first.encode("d")).unwrap().0, first);
        let c = Cursor::Changes { xid: 77, id: 12 };
        assert_eq!(Cursor::decode(&c.encode("d")), Some((c, "d")));
        for bad in [
            "",
            "c.1.2",
            "c.x.2.d",
            "c.1.-2.d",
            "s.1.Product.00.d",
            "s.1.product.zz.d",
            "q.1.2.d",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
