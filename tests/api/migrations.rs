//! Embedded migrations: status, dry run, apply, and refusing edited migrations.

use plugpos::core::db::migrations::{self, MigrationState, SchemaError};

use crate::helpers::{create_database, pool};

/// Every migration version this build embeds, in order.
pub fn all_versions() -> Vec<i64> {
    migrations::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect()
}

async fn table_exists(pool: &sqlx::PgPool, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn schema_fingerprint(pool: &sqlx::PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn dry_run_applies_and_rolls_back() {
    let pool = pool(&create_database(false).await);
    let status = migrations::status(&pool).await.unwrap();
    assert!(status.iter().all(|m| m.state == MigrationState::Pending));
    let before = schema_fingerprint(&pool).await;
    let tried = migrations::dry_run(&pool).await.unwrap();
    assert_eq!(tried, all_versions());
    assert_eq!(
        schema_fingerprint(&pool).await,
        before,
        "the dry run changed the schema"
    );
    assert!(!table_exists(&pool, "business").await);
    assert!(
        migrations::status(&pool)
            .await
            .unwrap()
            .iter()
            .all(|m| m.state == MigrationState::Pending)
    );
}

#[tokio::test]
async fn apply_then_status_then_nothing_pending() {
    let pool = pool(&create_database(false).await);
    assert!(matches!(
        migrations::check_current(&pool).await,
        Err(SchemaError::Pending(n)) if n == all_versions().len()
    ));
    assert_eq!(migrations::apply(&pool).await.unwrap(), all_versions());
    assert!(table_exists(&pool, "business").await);
    let status = migrations::status(&pool).await.unwrap();
    assert_eq!(status.len(), all_versions().len());
    assert!(status.iter().all(|m| m.state == MigrationState::Applied));
    assert_eq!(status[0].description, "foundation");
    assert_eq!(migrations::apply(&pool).await.unwrap(), Vec::<i64>::new());
    migrations::check_current(&pool).await.unwrap();
    assert_eq!(migrations::dry_run(&pool).await.unwrap(), Vec::<i64>::new());
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let pool = pool(&create_database(true).await);
    // What an edited migration file looks like from the database: a different checksum.
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea WHERE version = 1")
        .execute(&pool)
        .await
        .unwrap();
    let message = migrations::apply(&pool).await.unwrap_err().to_string();
    assert!(
        message.contains("migration 1 was changed after it was applied"),
        "{message}"
    );
    assert!(migrations::dry_run(&pool).await.is_err());
    assert!(migrations::check_current(&pool).await.is_err());
    assert_eq!(
        migrations::status(&pool).await.unwrap()[0].state,
        MigrationState::Changed
    );
}

#[tokio::test]
async fn a_migration_from_a_newer_release_is_reported() {
    let pool = pool(&create_database(true).await);
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from the future', true, '\\x00'::bytea, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let message = migrations::check_current(&pool)
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("does not know"), "{message}");
}

#[tokio::test]
async fn a_failing_migration_leaves_the_schema_as_it_was() {
    // An empty database, and in it a table named like one the last migration creates: the last
    // migration fails after every earlier one has run in the same transaction.
    let pool = pool(&create_database(false).await);
    sqlx::query("CREATE TABLE receipt_printers (squatter int)")
        .execute(&pool)
        .await
        .unwrap();
    let before = schema_fingerprint(&pool).await;
    let message = migrations::apply(&pool).await.unwrap_err().to_string();
    assert!(message.contains("receipt_printers"), "{message}");
    assert_eq!(
        schema_fingerprint(&pool).await,
        before,
        "a failed upgrade left part of its migrations behind"
    );
    assert!(!table_exists(&pool, "business").await);
    assert!(
        migrations::status(&pool)
            .await
            .unwrap()
            .iter()
            .all(|m| m.state == MigrationState::Pending)
    );
}
