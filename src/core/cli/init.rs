//! `plugpos init`: first-run setup for installers, without the HTTP API.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use secrecy::SecretString;

use crate::core::audit::checkpoint;
use crate::core::cli::database::CommandDatabase;
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::db::migrations;
use crate::core::modules::Registry;
use crate::core::setup::{self, SetupError, SetupInput, token};
use crate::shared::clock::Clock;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("password").required(true).args(["admin_password_file", "admin_password_stdin"]))]
pub struct InitArgs {
    /// The business name.
    #[arg(long)]
    pub business_name: String,
    /// ISO 4217 currency code, e.g. EUR.
    #[arg(long)]
    pub currency: String,
    /// IANA time zone, e.g. Europe/Berlin.
    #[arg(long)]
    pub timezone: String,
    /// Username of the first super admin.
    #[arg(long)]
    pub admin_username: String,
    /// Read the admin password from this file (first line).
    #[arg(long, value_name = "FILE")]
    pub admin_password_file: Option<PathBuf>,
    /// Read the admin password from standard input (first line).
    #[arg(long)]
    pub admin_password_stdin: bool,
}

pub async fn run(config: &Config, modules: &Registry, args: InitArgs) -> anyhow::Result<()> {
    let password = read_password(&args)?;
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let db = CommandDatabase::open(config, &data_dir).await?;
    let result = initialize(&db, &data_dir, modules, args, password).await;
    db.close().await;
    result
}

async fn initialize(
    db: &CommandDatabase,
    data_dir: &DataDir,
    modules: &Registry,
    args: InitArgs,
    password: SecretString,
) -> anyhow::Result<()> {
    migrations::apply(&db.owner).await?;
    let input = SetupInput {
        business_name: args.business_name,
        currency: args.currency,
        timezone: args.timezone,
        admin_username: args.admin_username,
        admin_password: password,
    };
    // The CLI runs outside a server: its clock is the system's.
    let clock = Clock::system();
    match setup::run(&db.pool, modules, input, clock.now()).await {
        Ok(outcome) => {
            token::remove(data_dir);
            checkpoint::load_or_create_key(&data_dir.keys())?;
            crate::core::backup::key::ensure(&data_dir.keys(), clock.now())?;
            say!(
                "initialized \"{}\" ({}, {}); super admin \"{}\"",
                outcome.business_name,
                outcome.currency,
                outcome.timezone,
                outcome.admin_username
            );
            Ok(())
        }
        Err(SetupError::AlreadyDone) => bail!("this instance is already set up; init runs once"),
        Err(SetupError::Invalid(errors)) => {
            let list: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", cli_flag(&e.field), e.message))
                .collect();
            bail!("invalid setup input: {}", list.join("; "))
        }
        Err(SetupError::Failed(e)) => Err(e),
    }
}

/// The flag that carries a setup field, so the message points at what to fix.
fn cli_flag(field: &str) -> &str {
    match field {
        "business.name" => "--business-name",
        "business.currency" => "--currency",
        "business.timezone" => "--timezone",
        "admin.username" => "--admin-username",
        "admin.password" => "admin password",
        other => other,
    }
}

fn read_password(args: &InitArgs) -> anyhow::Result<SecretString> {
    let mut text = String::new();
    match &args.admin_password_file {
        Some(path) => {
            text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the password from standard input")?;
        }
    }
    // Only the line ending is stripped: spaces are part of a passphrase.
    let line = text.lines().next().unwrap_or("").to_owned();
    if line.is_empty() {
        bail!("the admin password is empty");
    }
    Ok(SecretString::from(line))
}
