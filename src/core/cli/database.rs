//! Opening the database for the server and for one-off commands.

use anyhow::Context;
use sqlx::PgPool;

use crate::core::backup::DbTarget;
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::db::{external_options, lazy_pool};
use crate::core::postgres::{APP_ROLE, ClusterOptions, DATABASE_NAME, ManagedCluster};

/// The database as a one-off command (`migrate`, `init`...) uses it: the external database, the
/// running managed cluster, or the managed cluster started for this command only.
pub struct CommandDatabase {
    /// As the application role (what the server works as).
    pub pool: PgPool,
    /// As the schema's owner (migrations only).
    pub owner: PgPool,
    /// The database with the rights backups and restores need.
    pub target: DbTarget,
    started: Option<ManagedCluster>,
}

impl CommandDatabase {
    /// Opens the database, starting the managed cluster if nothing runs it.
    pub async fn open(config: &Config, data_dir: &DataDir) -> anyhow::Result<CommandDatabase> {
        if let Some(url) = config.external_database_url() {
            let pool = lazy_pool(external_options(url)?, 2);
            let owner = match config.external_owner_url() {
                Some(owner_url) => lazy_pool(external_options(owner_url)?, 1),
                None => lazy_pool(external_options(url)?, 1),
            };
            return Ok(CommandDatabase {
                pool,
                owner,
                target: DbTarget::new(config.external_owner_url().unwrap_or(url)),
                started: None,
            });
        }
        let cluster = ManagedCluster::new(
            data_dir,
            config.database.pg_bin_dir.as_deref(),
            ClusterOptions::default(),
        )?;
        let started = if cluster.running_pid().is_some() {
            None
        } else {
            cluster.start_detached().await?;
            Some(cluster.clone())
        };
        let db = CommandDatabase {
            pool: lazy_pool(cluster.connect_options_as(DATABASE_NAME, APP_ROLE), 2),
            owner: lazy_pool(cluster.connect_options(DATABASE_NAME), 1),
            target: DbTarget::managed(cluster.socket_dir(), DATABASE_NAME),
            started,
        };
        if let Err(e) = cluster.ensure_database(DATABASE_NAME).await {
            db.close().await;
            return Err(e);
        }
        Ok(db)
    }

    /// Closes the pool and stops the cluster if this command started it.
    pub async fn close(self) {
        self.pool.close().await;
        self.owner.close().await;
        if let Some(cluster) = self.started
            && let Err(e) = cluster
                .stop()
                .await
                .context("cannot stop the managed PostgreSQL")
        {
            tracing::error!("{e:#}");
        }
    }
}
