//! `plugpos upgrade FILE`, `plugpos version [--history]`, `plugpos package build|keygen` (the
//! release side) and the hidden `plugpos upgrade-check` the upgrade runs with the new binary.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use secrecy::SecretString;

use crate::core::audit::verify;
use crate::core::cli::database::CommandDatabase;
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::db::migrations;
use crate::core::upgrade::history::{self, Outcome};
use crate::core::upgrade::package::{self, BinaryFacts};
use crate::core::upgrade::{self, Request, Ui};
use crate::shared::clock::Clock;

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The update package (`plugpos-<version>-<arch>.plugpkg`).
    pub file: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Install a package of the version already installed.
    #[arg(long)]
    pub reinstall: bool,
    /// Check a real login as USER after the upgrade (the password from --password-file).
    #[arg(long, value_name = "USER", requires = "password_file")]
    pub login: Option<String>,
    /// The password for --login (`-` reads it from standard input).
    #[arg(long, value_name = "FILE", requires = "login")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Also list every upgrade attempt of this installation (upgraded or rolled back).
    #[arg(long)]
    pub history: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Build and sign an update package of BINARY (which reports its own version and schema).
    Build {
        #[arg(long, value_name = "FILE")]
        binary: PathBuf,
        /// The signing key (from `plugpos package keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The oldest release this package upgrades.
        #[arg(long, value_name = "VERSION", default_value = "0.1.0")]
        min_from: String,
        /// Where the package is written.
        #[arg(
            short = 'o',
            long = "output-dir",
            value_name = "DIR",
            default_value = "."
        )]
        output_dir: PathBuf,
    },
    /// Write a new signing key (0600) and print its public half (for upgrade.trusted_keys).
    Keygen {
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

pub async fn run(
    config: &Config,
    config_file: Option<PathBuf>,
    args: UpgradeArgs,
) -> anyhow::Result<()> {
    if args.password_file.as_deref() == Some(std::path::Path::new("-")) && !args.yes {
        bail!(
            "--password-file - reads the password from standard input, which then cannot confirm: add --yes"
        );
    }
    let login = match (&args.login, &args.password_file) {
        (Some(user), Some(file)) => Some((user.clone(), read_password(file)?)),
        _ => None,
    };
    let binary = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot find the installed plugpos binary")?;
    let request = Request {
        package: args.file,
        reinstall: args.reinstall,
        login,
        config_file,
        binary,
    };
    let terminal = Terminal {
        yes: args.yes,
        terminal: std::io::stderr().is_terminal(),
        spinner: std::sync::Mutex::new(None),
    };
    let outcome = upgrade::upgrade(config, request, &terminal).await;
    terminal.clear();
    let entry = outcome?;
    say!(
        "upgraded plugpos {} to {}; the pre-upgrade backup is {}",
        entry.from_version,
        entry.to_version,
        entry.backup_id.map(|id| id.to_string()).unwrap_or_default()
    );
    Ok(())
}

fn read_password(file: &std::path::Path) -> anyhow::Result<SecretString> {
    let text = if file.as_os_str() == "-" {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        bail!("the password file {} is empty", file.display());
    }
    Ok(SecretString::from(password))
}

/// Steps on standard error (on a terminal, a spinner turns while a long one runs); the go-ahead
/// typed on a terminal.
struct Terminal {
    yes: bool,
    terminal: bool,
    spinner: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Terminal {
    fn clear(&self) {
        let mut spinner = self.spinner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bar) = spinner.take() {
            bar.finish_and_clear();
        }
    }
}

impl Ui for Terminal {
    fn step(&self, line: &str) {
        self.clear();
        eprintln!("{line}");
    }

    fn working(&self, what: &str) {
        self.clear();
        if self.terminal {
            let bar = indicatif::ProgressBar::new_spinner().with_message(format!("{what}..."));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            *self.spinner.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
        }
    }

    fn confirm(&self, plan: &str) -> anyhow::Result<()> {
        if self.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "an upgrade stops the server: confirm on a terminal or pass --yes; nothing was changed"
            );
        }
        eprint!("{plan}\nType yes to continue: ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != "yes" {
            bail!("not confirmed; nothing was changed");
        }
        Ok(())
    }
}

pub fn version(config: &Config, args: VersionArgs) -> anyhow::Result<()> {
    let facts = BinaryFacts::current();
    let history = if args.history {
        history::read(&config.data_dir)
    } else {
        Vec::new()
    };
    if args.json {
        let mut value = serde_json::to_value(&facts)?;
        if args.history {
            value["history"] = serde_json::to_value(&history)?;
        }
        say!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    say!(
        "plugpos {} (schema {}, {}, build {})",
        facts.version,
        facts.schema_version,
        facts.arch,
        facts.build
    );
    if args.history {
        if history.is_empty() {
            say!(
                "no upgrades recorded in {}",
                history::path(&config.data_dir).display()
            );
        }
        for entry in &history {
            let outcome = match entry.outcome {
                Outcome::Upgraded => "upgraded".to_owned(),
                Outcome::RolledBack => format!(
                    "ROLLED BACK at {}",
                    entry.failed_step.as_deref().unwrap_or("?")
                ),
                Outcome::RollbackFailed => "ROLLBACK FAILED".to_owned(),
                Outcome::Aborted => format!(
                    "aborted at {}, nothing changed",
                    entry.failed_step.as_deref().unwrap_or("?")
                ),
            };
            say!(
                "{}  {} -> {}  {outcome}{}",
                entry.at.format("%Y-%m-%d %H:%M:%S UTC"),
                entry.from_version,
                entry.to_version,
                entry
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

pub fn package(command: &PackageCommand) -> anyhow::Result<()> {
    match command {
        PackageCommand::Keygen { output } => {
            if output.exists() {
                bail!(
                    "{} exists; a signing key is never overwritten",
                    output.display()
                );
            }
            let public = package::generate_key(output)?;
            say!("{public}");
            eprintln!(
                "signing key written to {} (0600); its public key is above: add it to upgrade.trusted_keys",
                output.display()
            );
        }
        PackageCommand::Build {
            binary,
            key,
            min_from,
            output_dir,
        } => {
            let key = package::read_signing_key(key)?;
            let binary = &std::fs::canonicalize(binary)
                .with_context(|| format!("cannot find {}", binary.display()))?;
            let facts = BinaryFacts::of(binary).map_err(anyhow::Error::msg)?;
            let path = package::build(
                binary,
                &facts,
                min_from,
                &key,
                output_dir,
                Clock::system().now(),
            )?;
            say!("{}", path.display());
            eprintln!(
                "package of plugpos {} ({}, schema {}) signed by {}",
                facts.version,
                facts.arch,
                facts.schema_version,
                hex::encode(key.verifying_key().to_bytes())
            );
        }
    }
    Ok(())
}

/// `plugpos upgrade-record JSON`: one attempt into the version history (see `Children::record`).
pub fn record(config: &Config, entry: &str) -> anyhow::Result<()> {
    let entry: history::Entry =
        serde_json::from_str(entry).context("the history entry is not one plugpos wrote")?;
    history::append(&config.data_dir, &entry)
}

/// The tables the core cannot work without (each module checks its own at startup).
const CORE_TABLES: [&str; 12] = [
    "business",
    "settings",
    "registers",
    "users",
    "roles",
    "role_permissions",
    "sessions",
    "audit_records",
    "audit_chain",
    "modules",
    "jobs",
    "sales",
];

/// The post-upgrade checks, run by the new binary: fails with the first that does not hold.
pub async fn check(config: &Config, audit_head: Option<String>) -> anyhow::Result<()> {
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let db = CommandDatabase::open(config, &data_dir).await?;
    let result = async {
        migrations::check_current(&db.owner).await?;
        for table in CORE_TABLES {
            let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(table)
                .fetch_one(&db.owner)
                .await?;
            if !present {
                bail!("the core table {table} is missing");
            }
        }
        let report = verify::verify_instance(&db.pool, &data_dir.keys(), Vec::new()).await?;
        if !report.ok {
            bail!(
                "the audit chain is broken at record {}: {}",
                report.first_bad_seq.unwrap_or_default(),
                report.reason.unwrap_or_default()
            );
        }
        let mut kept = String::new();
        if let Some(head) = &audit_head {
            let (seq, hash) = head
                .split_once(':')
                .and_then(|(s, h)| Some((s.parse::<i64>().ok()?, h)))
                .context("--audit-head is SEQ:HASH")?;
            let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM audit_chain WHERE seq = $1")
                .bind(seq)
                .fetch_optional(&db.pool)
                .await?;
            if stored.map(hex::encode).as_deref() != Some(hash) {
                bail!("audit record {seq}, the last one before the upgrade, is gone or changed");
            }
            kept = format!("; record {seq}, the last before the upgrade, unchanged");
        }
        Ok(format!(
            "migrations current (schema {}), {} core tables present, audit chain verifies: {} records{kept}",
            migrations::embedded_schema_version(),
            CORE_TABLES.len(),
            report.verified
        ))
    }
    .await;
    db.close().await;
    say!("{}", result?);
    Ok(())
}
