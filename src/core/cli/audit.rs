//! `plugpos audit verify`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::core::audit::checkpoint::Checkpoint;
use crate::core::audit::verify;
use crate::core::cli::database::CommandDatabase;
use crate::core::config::Config;
use crate::core::data_dir::DataDir;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the audit chain; prints the report as JSON and fails if the chain is broken.
    Verify {
        /// A checkpoint saved from `POST /api/v1/audit/checkpoints`: also detects a truncated or
        /// rewritten chain.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
    },
}

pub async fn run(config: &Config, command: AuditCommand) -> anyhow::Result<()> {
    let AuditCommand::Verify { checkpoint: file } = command;
    let mut external = Vec::new();
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let parsed: Checkpoint = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a checkpoint saved from POST /api/v1/audit/checkpoints",
                path.display()
            )
        })?;
        external.push(parsed);
    }
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let db = CommandDatabase::open(config, &data_dir).await?;
    let result = verify::verify_instance(&db.pool, &data_dir.keys(), external).await;
    db.close().await;
    let report = result?;
    say!("{}", serde_json::to_string_pretty(&report)?);
    if !report.ok {
        bail!(
            "the audit chain is broken at record {}: {}",
            report.first_bad_seq.unwrap_or_default(),
            report.reason.unwrap_or_default()
        );
    }
    Ok(())
}
