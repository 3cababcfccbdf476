//! `plugpos doctor [--json]`: prints the installation's checks (`core::doctor`), one line each
//! with OK / WARN / FAIL and the remedy; exit 0 all OK, 1 with warnings, 2 with failures.

use crate::core::config::Config;
use crate::core::doctor::{Level, checks};
use crate::core::modules::Verifier;

pub async fn run(config: &Config, modules: &[Verifier], json: bool) -> anyhow::Result<()> {
    let checks = checks(config, modules).await?;
    let worst = checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    if json {
        say!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"status": worst, "checks": checks}))?
        );
    } else {
        for check in &checks {
            let level = match check.level {
                Level::Ok => "OK  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            match &check.remedy {
                Some(remedy) => say!("{level} {}: {}; {remedy}", check.name, check.detail),
                None => say!("{level} {}: {}", check.name, check.detail),
            }
        }
    }
    let count = |level| checks.iter().filter(|c| c.level == level).count();
    match worst {
        Level::Ok => Ok(()),
        Level::Warn => anyhow::bail!("{} warning(s) (above)", count(Level::Warn)),
        Level::Fail => {
            eprintln!(
                "plugpos: {} failure(s) and {} warning(s) (above)",
                count(Level::Fail),
                count(Level::Warn)
            );
            std::process::exit(2)
        }
    }
}
