//! The places' SQL: `branches`, `locations`, `registers` (this module's tables). Writes take the
//! audited transaction, so none can commit without its audit record.

use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// A branch, location or register, as stored and as answered.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Place {
    pub id: Uuid,
    pub name: String,
    /// The branch (locations and registers).
    pub branch_id: Option<Uuid>,
    /// The location (registers: where their sales take stock from).
    pub location_id: Option<Uuid>,
    /// Registers: the short code that starts their receipt numbers (`R1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub version: i64,
}

/// Which table a place lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Branch,
    Location,
    Register,
}

impl Kind {
    /// The audit entity, and the word for it in messages.
    pub fn entity(self) -> &'static str {
        match self {
            Kind::Branch => "branch",
            Kind::Location => "location",
            Kind::Register => "register",
        }
    }

    /// The audit action of a create.
    pub fn action(self) -> &'static str {
        match self {
            Kind::Branch => "branch.create",
            Kind::Location => "location.create",
            Kind::Register => "register.create",
        }
    }
}

/// The live places of one kind, by name.
pub async fn list(conn: &mut PgConnection, kind: Kind) -> Result<Vec<Place>, sqlx::Error> {
    let sql = match kind {
        Kind::Branch => {
            "SELECT id, name, NULL::uuid AS branch_id, NULL::uuid AS location_id, NULL::text AS code, version FROM branches WHERE deleted_at IS NULL ORDER BY name"
        }
        Kind::Location => {
            "SELECT id, name, branch_id, NULL::uuid AS location_id, NULL::text AS code, version FROM locations WHERE deleted_at IS NULL ORDER BY name"
        }
        Kind::Register => {
            "SELECT id, name, branch_id, location_id, code, version FROM registers WHERE deleted_at IS NULL ORDER BY name"
        }
    };
    sqlx::query_as(sql).fetch_all(conn).await
}

/// One live place of `kind`.
pub async fn get(
    conn: &mut PgConnection,
    kind: Kind,
    id: Uuid,
) -> Result<Option<Place>, sqlx::Error> {
    Ok(list(conn, kind).await?.into_iter().find(|p| p.id == id))
}

pub async fn insert_branch(tx: &mut AuditedTx, id: Uuid, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO branches (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(name)
        .execute(&mut **tx)
        .await
        .map(drop)
}

pub async fn insert_location(
    tx: &mut AuditedTx,
    id: Uuid,
    branch: Uuid,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO locations (id, branch_id, name) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(branch)
        .bind(name)
        .execute(&mut **tx)
        .await
        .map(drop)
}

/// The branch of live location `id`.
pub async fn branch_of_location(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT branch_id FROM locations WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Inserts a register; without a `code`, the next free `R<n>`.
pub async fn insert_register(
    tx: &mut AuditedTx,
    id: Uuid,
    branch: Uuid,
    location: Uuid,
    name: &str,
    code: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO registers (id, branch_id, location_id, name, code) \
         VALUES ($1, $2, $3, $4, COALESCE($5, 'R' || nextval('register_code_seq')))",
    )
    .bind(id)
    .bind(branch)
    .bind(location)
    .bind(name)
    .bind(code)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Is `id` a live location?
pub async fn location_exists(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM locations WHERE id = $1 AND deleted_at IS NULL)",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// The only live location, when there is exactly one.
pub async fn sole_location(conn: &mut PgConnection) -> Result<Option<Uuid>, sqlx::Error> {
    let all: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM locations WHERE deleted_at IS NULL ORDER BY id LIMIT 2")
            .fetch_all(conn)
            .await?;
    Ok(match all.as_slice() {
        [only] => Some(*only),
        _ => None,
    })
}

/// Is `id` a live register?
pub async fn register_exists(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM registers WHERE id = $1 AND deleted_at IS NULL)",
    )
    .bind(id)
    .fetch_one(conn)
    .await
}

/// A register as a sale needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SaleRegister {
    /// The short code that starts its receipt numbers.
    pub code: String,
    /// Where its sales take stock from.
    pub location_id: Uuid,
}

/// A register as a receipt names it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RegisterCard {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub branch_id: Uuid,
}

/// Register `id` (deleted ones too: their documents still print).
pub async fn register_card(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<RegisterCard>, sqlx::Error> {
    sqlx::query_as("SELECT id, code, name, branch_id FROM registers WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Live register `id` as a sale needs it.
pub async fn sale_register(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<SaleRegister>, sqlx::Error> {
    sqlx::query_as("SELECT code, location_id FROM registers WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// A branch as a closing needs it: its name, its registers (with their codes) and its
/// locations, deleted ones included (their documents stay the branch's).
#[derive(Debug, Clone)]
pub struct BranchPlaces {
    pub id: Uuid,
    pub name: String,
    /// (id, code), by code.
    pub registers: Vec<(Uuid, String)>,
    pub locations: Vec<Uuid>,
}

/// Branch `id` (live), with its registers and locations.
pub async fn branch_places(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<BranchPlaces>, sqlx::Error> {
    let Some(name): Option<String> =
        sqlx::query_scalar("SELECT name FROM branches WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(None);
    };
    let registers =
        sqlx::query_as("SELECT id, code FROM registers WHERE branch_id = $1 ORDER BY code, id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let locations = sqlx::query_scalar("SELECT id FROM locations WHERE branch_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    Ok(Some(BranchPlaces {
        id,
        name,
        registers,
        locations,
    }))
}

/// The only live branch, when there is exactly one.
pub async fn sole_branch(conn: &mut PgConnection) -> Result<Option<Uuid>, sqlx::Error> {
    let all: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM branches WHERE deleted_at IS NULL ORDER BY id LIMIT 2")
            .fetch_all(conn)
            .await?;
    Ok(match all.as_slice() {
        [only] => Some(*only),
        _ => None,
    })
}

/// `code name` of each of `registers` (deleted ones included), for reports.
pub async fn register_labels(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, code || ' ' || name FROM registers WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// The name of each of `locations` (deleted ones included), for reports.
pub async fn location_labels(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, name FROM locations WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(conn)
        .await
}

/// The registers tills cache (the change feed, `core::sync`): deleted ones are tombstones.
pub const SYNC_ENTITIES: &[crate::core::sync::SyncEntity] = &[crate::core::sync::SyncEntity {
    name: "register",
    permission: Some(super::READ),
    read: |_, conn, query| futures_util::FutureExt::boxed(sync_registers(conn, query)),
}];

async fn sync_registers(
    conn: &mut PgConnection,
    query: crate::core::sync::SyncQuery<'_>,
) -> Result<Vec<(String, serde_json::Value)>, crate::core::http::ApiError> {
    let (filter, keys, after, limit) = query.by_uuid("id");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id::text, jsonb_build_object('id', id, 'name', name, 'code', code, 'branch_id', branch_id, \
                'location_id', location_id, 'version', version) \
         FROM registers WHERE {filter} AND deleted_at IS NULL ORDER BY id LIMIT $3"
    )))
    .bind(keys)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}
