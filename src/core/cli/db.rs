//! `plugpos db start|stop|status`: the managed cluster by hand.

use anyhow::bail;
use clap::Subcommand;

use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::data_dir::pid_file::running_server;
use crate::core::postgres::{ClusterOptions, DATABASE_NAME, ManagedCluster};

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Start the managed cluster in the background (it keeps running after this command).
    Start,
    /// Stop the managed cluster (refused while `plugpos serve` runs: stop the server instead).
    Stop,
    /// Show whether the managed cluster runs, and where.
    Status,
}

pub async fn run(config: &Config, command: DbCommand) -> anyhow::Result<()> {
    if config.external_database_url().is_some() {
        bail!(
            "database.url is set: this instance uses an external PostgreSQL, not the managed cluster"
        );
    }
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let cluster = ManagedCluster::new(
        &data_dir,
        config.database.pg_bin_dir.as_deref(),
        ClusterOptions::default(),
    )?;
    match command {
        DbCommand::Start => {
            if let Some(pid) = cluster.running_pid() {
                say!("already running (pid {pid})");
                return Ok(());
            }
            cluster.start_detached().await?;
            cluster.ensure_database(DATABASE_NAME).await?;
            say!(
                "started (pid {}); socket in {}",
                cluster.running_pid().unwrap_or_default(),
                cluster.socket_dir().display()
            );
        }
        DbCommand::Stop => {
            if let Some(pid) = running_server(&data_dir) {
                bail!(
                    "plugpos serve (pid {pid}) is running with this data directory; stop the server instead (it stops its PostgreSQL)"
                );
            }
            if cluster.running_pid().is_none() {
                say!("not running");
                return Ok(());
            }
            cluster.stop().await?;
            say!("stopped");
        }
        DbCommand::Status => {
            if !cluster.is_initialized() {
                say!(
                    "not initialized ({} does not hold a cluster yet)",
                    cluster.pgdata().display()
                );
            } else if let Some(pid) = cluster.running_pid() {
                say!(
                    "running (pid {pid}); data {}; socket in {}",
                    cluster.pgdata().display(),
                    cluster.socket_dir().display()
                );
            } else {
                say!("stopped; data {}", cluster.pgdata().display());
            }
        }
    }
    Ok(())
}
