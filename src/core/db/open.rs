//! Opening the database for the server and for one-off commands.

use std::str::FromStr;

use anyhow::Context;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};

use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::db::lazy_pool;
use crate::core::postgres::{ClusterOptions, DATABASE_NAME, ManagedCluster};

/// Connection options for `database.url`; the URL itself is never put into an error message
/// (it may hold a password).
pub fn external_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| anyhow::anyhow!("config key `database.url` is not a valid PostgreSQL URL"))?;
    Ok(options
        .application_name("plugpos")
        .disable_statement_logging())
}

/// The database as a one-off command (`migrate`, `init`...) uses it: the external database, the
/// running managed cluster, or the managed cluster started for this command only.
pub struct CommandDatabase {
    pub pool: PgPool,
    started: Option<ManagedCluster>,
}

impl CommandDatabase {
    /// Opens the database, starting the managed cluster if nothing runs it.
    pub async fn open(config: &Config, data_dir: &DataDir) -> anyhow::Result<CommandDatabase> {
        if let Some(url) = config.external_database_url() {
            let pool = lazy_pool(external_options(url)?, 2);
            return Ok(CommandDatabase {
                pool,
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
            pool: lazy_pool(cluster.connect_options(DATABASE_NAME), 2),
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
