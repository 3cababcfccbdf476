//! `plugpos closing verify`: the closings' signatures, chaining and totals, checked against the
//! documents (the check is the closings module's, offered as a `Verifier`).

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::core::cli::database::CommandDatabase;
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::modules::Registry;

#[derive(Debug, Subcommand)]
pub enum ClosingCommand {
    /// Check every closing: its signature, its chaining to the one before, and that its totals
    /// still equal what the documents add up to; prints the report as JSON, fails on a problem.
    Verify,
}

pub async fn run(
    config: &Config,
    registry: &Registry,
    command: ClosingCommand,
) -> anyhow::Result<()> {
    let ClosingCommand::Verify = command;
    verify_with(config, registry, "closing", &[], "closings").await
}

/// Runs the module verifier `name` with `args`, prints its report as JSON and fails (one line
/// naming the first problem) when it found any; `items` names what it checks.
pub(super) async fn verify_with(
    config: &Config,
    registry: &Registry,
    name: &str,
    args: &[String],
    items: &str,
) -> anyhow::Result<()> {
    let verifier = registry
        .modules()
        .iter()
        .flat_map(|m| m.verifiers().iter())
        .find(|v| v.name == name)
        .copied()
        .with_context(|| format!("no module of this build offers `{name} verify`"))?;
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let db = CommandDatabase::open(config, &data_dir).await?;
    let result = (verifier.run)(&db.pool, &data_dir.keys(), args).await;
    db.close().await;
    let report = result?;
    say!("{}", serde_json::to_string_pretty(&report)?);
    if !report.ok {
        bail!(
            "{} problem(s) in {} {items}, first: {}",
            report.problems.len(),
            report.checked,
            report
                .problems
                .first()
                .map(String::as_str)
                .unwrap_or_default()
        );
    }
    Ok(())
}
