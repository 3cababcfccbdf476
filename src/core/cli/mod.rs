//! The command line (`plugpos <command>`). Every command exits non-zero with a one-line reason
//! on failure.

/// `println!` for command output: a reader that goes away (`plugpos backup list | head`) does not
/// make the command panic on the broken pipe, as `println!` would.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::core::cli::print_line(format_args!($($arg)*))
    };
}

mod audit;
mod backup;
mod closing;
mod database;
mod db;
mod doctor;
mod init;
mod migrate;
mod receipt;
mod support;
mod tls;
mod upgrade;

use std::net::IpAddr;
use std::path::PathBuf;

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::core::config::{CONFIG_FILE_ENV, Config, EXAMPLE};
use crate::core::logging;
use crate::core::modules::{Module, Registry};
use crate::core::server::{self, openapi};

/// 3PlugPOS server: an offline-first, on-premise point-of-sale backend.
#[derive(Debug, Parser)]
#[command(name = "plugpos", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file (TOML). `PLUGPOS_*` environment variables override it.
    #[arg(long, global = true, env = CONFIG_FILE_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (managed PostgreSQL, backups, logs, keys); overrides `data_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (starts the managed PostgreSQL unless `database.url` is set).
    Serve(ServeArgs),
    /// First-run setup without the HTTP API (for installers); refuses to run twice.
    Init(init::InitArgs),
    /// Apply pending migrations; `status` lists them, `--dry-run` tries them and rolls back.
    Migrate(migrate::MigrateArgs),
    /// Check the configuration or print a commented example.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Start, stop or inspect the managed PostgreSQL cluster by hand.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Take, list, verify and restore encrypted backups; export the backup key.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Verify the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Verify the Z closings (signatures, chaining, totals against the documents).
    #[command(subcommand)]
    Closing(closing::ClosingCommand),
    /// Verify a receipt's signed QR code against this instance's key and records.
    #[command(subcommand)]
    Receipt(receipt::ReceiptCommand),
    /// Check the installation, one line each with OK / WARN / FAIL and the remedy: data
    /// directory, disk, PostgreSQL, migrations, audit chain, clock, backups, server, service.
    /// Starts nothing (the server may run); exit 0 all OK, 1 warnings, 2 failures.
    Doctor {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the support bundle (redacted configuration, scrubbed logs, checks, backups, jobs,
    /// audit, database and system facts) as one .tar.zst; works with the database down.
    SupportBundle(support::SupportArgs),
    /// Upgrade from a signed update package: backup first, automatic rollback on failure.
    Upgrade(upgrade::UpgradeArgs),
    /// Print this binary's version and schema; `--history` lists the upgrades of this installation.
    Version(upgrade::VersionArgs),
    /// Build and sign update packages (the release side; see packaging/build-plugpkg.sh).
    #[command(subcommand)]
    Package(upgrade::PackageCommand),
    /// The checks `plugpos upgrade` runs with the new binary (migrations, core tables, audit chain).
    #[command(hide = true)]
    UpgradeCheck {
        /// `SEQ:HASH` of the last audit record before the upgrade, which must be unchanged.
        #[arg(long)]
        audit_head: Option<String>,
    },
    /// Appends one attempt (JSON) to the version history: how `plugpos upgrade`, run by root,
    /// writes it as the data directory's owner.
    #[command(hide = true)]
    UpgradeRecord { entry: String },
    /// Print the OpenAPI 3.1 document.
    Openapi,
    /// HTTPS certificates: `self-signed` makes one for the shop LAN.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (`http.bind`); 127.0.0.1 by default.
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// TCP port (`http.port`); 0 picks a free one.
    #[arg(long)]
    pub port: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (file and environment) and report the first problem.
    Check,
    /// Print a commented example configuration with every default.
    Default,
}

impl Cli {
    /// Loads the configuration the command runs with: defaults, file, environment, flags.
    fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        let flag = "from the command line".to_owned();
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
            config.sources.insert("data_dir".to_owned(), flag.clone());
        }
        if let Command::Serve(args) = &self.command {
            if let Some(bind) = args.bind {
                config.http.bind = bind;
                config.sources.insert("http.bind".to_owned(), flag.clone());
            }
            if let Some(port) = args.port {
                config.http.port = port;
                config.sources.insert("http.port".to_owned(), flag);
            }
        }
        Ok(config)
    }
}

/// Runs the parsed command with the plugs' modules (`main` passes them: core never imports a plug).
pub async fn run(cli: Cli, modules: fn() -> Vec<Arc<dyn Module>>) -> anyhow::Result<()> {
    let result = run_command(cli, modules).await;
    match OUTPUT_FAILED.get() {
        Some(failure) if result.is_ok() => Err(anyhow::anyhow!("{failure}")),
        _ => result,
    }
}

async fn run_command(cli: Cli, modules: fn() -> Vec<Arc<dyn Module>>) -> anyhow::Result<()> {
    let registry =
        Registry::new(modules()).context("the registered modules cannot run together")?;
    match &cli.command {
        Command::Config(ConfigCommand::Default) => {
            say!("{}", EXAMPLE.trim_end_matches('\n'));
            return Ok(());
        }
        Command::Package(command) => return upgrade::package(command),
        Command::Openapi => {
            let json = openapi::document(&registry)
                .to_pretty_json()
                .context("cannot render the OpenAPI document")?;
            say!("{json}");
            return Ok(());
        }
        _ => {}
    }
    let config = cli.load_config()?;
    match cli.command {
        Command::Serve(_) => server::serve(config, registry).await,
        Command::Config(ConfigCommand::Check) => {
            match &cli.config {
                Some(file) => say!("configuration OK ({})", file.display()),
                None => say!("configuration OK (defaults and environment; no file given)"),
            }
            Ok(())
        }
        command => {
            logging::init_command();
            match command {
                Command::Init(args) => init::run(&config, &registry, args).await,
                Command::Migrate(args) => migrate::run(&config, args).await,
                Command::Db(command) => db::run(&config, command).await,
                Command::Audit(command) => audit::run(&config, command).await,
                Command::Closing(command) => closing::run(&config, &registry, command).await,
                Command::Receipt(command) => receipt::run(&config, &registry, command).await,
                Command::Backup(command) => backup::run(&config, command).await,
                Command::Tls(command) => tls::run(&config, command),
                Command::Doctor { json } => {
                    doctor::run(&config, &registry.doctor_checks(), json).await
                }
                Command::SupportBundle(args) => {
                    support::run(&config, &registry.doctor_checks(), args).await
                }
                Command::Upgrade(args) => upgrade::run(&config, cli.config.clone(), args).await,
                Command::Version(args) => upgrade::version(&config, args),
                Command::UpgradeCheck { audit_head } => upgrade::check(&config, audit_head).await,
                Command::UpgradeRecord { entry } => upgrade::record(&config, &entry),
                Command::Serve(_) | Command::Config(_) | Command::Openapi | Command::Package(_) => {
                    Ok(())
                }
            }
        }
    }
}

/// Set when command output could not be written for another reason than a closed pipe.
static OUTPUT_FAILED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static OUTPUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes one line of command output (see `say!`). Once the reader has gone away the rest is
/// dropped and the command finishes normally (so it still closes what it opened, such as a
/// cluster it started). Any other failure (a full disk under a redirect) is remembered, and the
/// command then fails with it.
pub fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if OUTPUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out
        .write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
    {
        OUTPUT_CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let _ = OUTPUT_FAILED.set(format!("cannot write the output: {e}"));
        }
    }
}
