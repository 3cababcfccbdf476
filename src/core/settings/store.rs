//! The `settings` table and the settings version (`business.settings_version`).

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::PgConnection;

use crate::core::audit::AuditedTx;

/// The stored values and the version they make up.
#[derive(Debug, Clone, Default)]
pub struct Stored {
    /// Moves on with every change that changed something; `PATCH` names the one it read.
    pub version: i64,
    pub values: BTreeMap<String, Value>,
}

/// The stored settings. Before setup: version 0, nothing stored.
pub async fn load(conn: &mut PgConnection) -> Result<Stored, sqlx::Error> {
    let version: Option<i64> = sqlx::query_scalar("SELECT settings_version FROM business")
        .fetch_optional(&mut *conn)
        .await?;
    let rows: Vec<(String, Value)> = sqlx::query_as("SELECT key, value FROM settings")
        .fetch_all(&mut *conn)
        .await?;
    Ok(Stored {
        version: version.unwrap_or(0),
        values: rows.into_iter().collect(),
    })
}

/// Takes the next version if `expected` is still the current one (else `None`: someone changed
/// the settings since the caller read them). The business row stays locked until commit, so
/// concurrent changes apply one after the other.
pub async fn next_version(tx: &mut AuditedTx, expected: i64) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE business SET settings_version = settings_version + 1, updated_at = now() \
         WHERE settings_version = $1 RETURNING settings_version",
    )
    .bind(expected)
    .fetch_optional(&mut **tx)
    .await
}

/// Stores `values` (key, value), replacing what is there.
pub async fn put(tx: &mut AuditedTx, values: &BTreeMap<String, Value>) -> Result<(), sqlx::Error> {
    let keys: Vec<&str> = values.keys().map(String::as_str).collect();
    let json: Vec<&Value> = values.values().collect();
    sqlx::query(
        "INSERT INTO settings AS s (key, value) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = s.version + 1, updated_at = now()",
    )
    .bind(&keys)
    .bind(&json)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
