//! The incidents module's SQL: `flags` and `incidents` (its tables), both append-only.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::core::audit::AuditedTx;

/// A flag: a suspicious-pattern rule that fired.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Flag {
    pub id: Uuid,
    /// `corrections_count`, `corrections_share`, `discount`, `outside_hours`, `void_after_exact_cash`.
    pub rule: String,
    /// The cashier.
    pub user_id: Uuid,
    pub business_date: NaiveDate,
    /// What the rule saw (counts, percents, thresholds).
    #[schema(value_type = Object)]
    pub details: Value,
    /// The documents involved (sales, returns, voids, cash movements).
    pub document_ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// Raises a flag unless the same one was raised already: its id when new.
#[allow(clippy::too_many_arguments)] // One column each.
pub async fn raise(
    tx: &mut AuditedTx,
    rule: &str,
    user_id: Uuid,
    date: NaiveDate,
    key: &str,
    details: &Value,
    documents: &[Uuid],
    at: DateTime<Utc>,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO flags (id, rule, user_id, business_date, key, details, document_ids, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (rule, user_id, business_date, key) DO NOTHING RETURNING id",
    )
    .bind(crate::shared::ids::new_id())
    .bind(rule)
    .bind(user_id)
    .bind(date)
    .bind(key)
    .bind(details)
    .bind(documents)
    .bind(at)
    .fetch_optional(&mut **tx)
    .await
}

/// Which flags a list shows.
#[derive(Debug, Default)]
pub struct FlagFilter {
    pub rule: Option<String>,
    pub user_id: Option<Uuid>,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Up to `limit` flags of `filter`, newest first, after the (created_at, id) `after`.
pub async fn flags(
    conn: &mut PgConnection,
    filter: &FlagFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Flag>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, rule, user_id, business_date, details, document_ids, created_at FROM flags \
         WHERE ($1::text IS NULL OR rule = $1) AND ($2::uuid IS NULL OR user_id = $2) \
           AND ($3::date IS NULL OR business_date >= $3) AND ($4::date IS NULL OR business_date <= $4) \
           AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6)) \
         ORDER BY created_at DESC, id DESC LIMIT $7",
    )
    .bind(&filter.rule)
    .bind(filter.user_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// How many of `ids` are flags.
pub async fn count_flags(conn: &mut PgConnection, ids: &[Uuid]) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM flags WHERE id = ANY($1)")
        .bind(ids)
        .fetch_one(conn)
        .await
}

/// An incident note.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Incident {
    pub id: Uuid,
    pub title: String,
    pub body: String,
    pub flag_ids: Vec<Uuid>,
    pub document_ids: Vec<Uuid>,
    /// The earlier note this one amends.
    pub amends: Option<Uuid>,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_incident(tx: &mut AuditedTx, i: &Incident) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO incidents (id, title, body, flag_ids, document_ids, amends, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(i.id)
    .bind(&i.title)
    .bind(&i.body)
    .bind(&i.flag_ids)
    .bind(&i.document_ids)
    .bind(i.amends)
    .bind(i.created_by)
    .bind(i.created_at)
    .execute(&mut **tx)
    .await
    .map(drop)
}

pub async fn incident(conn: &mut PgConnection, id: Uuid) -> Result<Option<Incident>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, title, body, flag_ids, document_ids, amends, created_by, created_at FROM incidents WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Up to `limit` incidents, newest first, after the (created_at, id) `after`.
pub async fn incidents(
    conn: &mut PgConnection,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<Incident>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, title, body, flag_ids, document_ids, amends, created_by, created_at FROM incidents \
         WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2)) ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(limit)
    .fetch_all(conn)
    .await
}
