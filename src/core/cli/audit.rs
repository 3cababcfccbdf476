//! `plugpos audit verify`.

use anyhow::bail;
use clap::Subcommand;

use crate::core::audit::{chain, verify};
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::db::open::CommandDatabase;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit chain; prints the report as JSON and fails if the chain is broken.
    Verify,
}

pub async fn run(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify = command;
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let db = CommandDatabase::open(config, &data_dir).await?;
    let result = async {
        chain::chain_pending(&db.pool).await?;
        Ok::<_, anyhow::Error>(verify::verify(&db.pool).await?)
    }
    .await;
    db.close().await;
    let report = result?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.ok {
        bail!(
            "the audit chain is broken at record {}: {}",
            report.first_bad_seq.unwrap_or_default(),
            report.reason.unwrap_or_default()
        );
    }
    Ok(())
}
