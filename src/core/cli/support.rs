//! `plugpos support-bundle [-o FILE]`: the support bundle, written on this machine. It starts
//! nothing: with the database down (or its cluster stopped) the database parts say why they are
//! missing and the rest is complete.

use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::support::{self, DEFAULT_LOG_DAYS, Sources};
use crate::shared::clock::Clock;

#[derive(Debug, Args)]
pub struct SupportArgs {
    /// Where to write it (default: plugpos-support-<time>.tar.zst here).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Days of logs to include (1 to 30; default: the setting support.log_days, else 3).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub log_days: Option<u32>,
}

pub async fn run(
    config: &Config,
    doctor_checks: &[crate::core::modules::Verifier],
    args: SupportArgs,
) -> anyhow::Result<()> {
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let now = Clock::system().now();
    let output = args.output.unwrap_or_else(|| {
        PathBuf::from(format!(
            "plugpos-support-{}.tar.zst",
            now.format("%Y%m%d-%H%M%S")
        ))
    });
    let spinner = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message("collecting: checks, backups, database, logs");
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let mut checks = Vec::new();
    let pool = crate::core::doctor::database_checks(config, &data_dir, &mut checks).await;
    let database = pool.clone().ok_or_else(|| {
        checks
            .iter()
            .rev()
            .find(|c| c.level != crate::core::doctor::Level::Ok)
            .map(|c| c.detail.clone())
            .unwrap_or_else(|| "not reachable".to_owned())
    });
    let log_days = match (args.log_days, &pool) {
        (Some(days), _) => days,
        (None, Some(pool)) => sqlx::query_scalar::<_, serde_json::Value>(
            "SELECT value FROM settings WHERE key = 'support.log_days'",
        )
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(DEFAULT_LOG_DAYS),
        (None, None) => DEFAULT_LOG_DAYS,
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&output)
        .with_context(|| format!("cannot write {}", output.display()))?;
    let written = support::write(
        Sources {
            config,
            data_dir: &data_dir,
            database,
            log_days,
            now,
            requested_by: "plugpos support-bundle".to_owned(),
            doctor_checks: doctor_checks.to_vec(),
        },
        file,
    )
    .await;
    if let Some(pool) = pool {
        pool.close().await;
    }
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
    let manifest =
        written.with_context(|| format!("cannot write the support bundle {}", output.display()))?;
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    say!(
        "{} ({} files, {size} bytes)",
        output.display(),
        manifest.files.len()
    );
    for file in manifest.files.iter().filter(|f| f.error.is_some()) {
        eprintln!(
            "incomplete: {}: {}",
            file.name,
            file.error.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
