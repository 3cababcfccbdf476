//! The connection pool and the schema's migrations.

pub mod migrations;
pub mod open;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// How long a request waits for a pooled connection before it fails (then readiness says why).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool that connects on first use, so the server can start (and report unready) while the
/// database is briefly unreachable, and reconnects by itself after PostgreSQL restarts.
pub fn lazy_pool(options: PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection that survived a PostgreSQL restart is dead; check before handing it out.
        .test_before_acquire(true)
        .connect_lazy_with(options)
}

/// Proves the database answers (readiness check).
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}
