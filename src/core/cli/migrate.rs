//! `plugpos migrate [status] [--dry-run]`.

use clap::{Args, Subcommand};

use crate::core::cli::database::CommandDatabase;
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::db::migrations;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Apply the pending migrations inside a transaction and roll it back: proves they apply,
    /// changes nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(subcommand)]
    pub action: Option<MigrateAction>,
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// List applied and pending migrations.
    Status,
}

pub async fn run(config: &Config, args: MigrateArgs) -> anyhow::Result<()> {
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let db = CommandDatabase::open(config, &data_dir).await?;
    let result = execute(&db, args).await;
    db.close().await;
    result
}

async fn execute(db: &CommandDatabase, args: MigrateArgs) -> anyhow::Result<()> {
    match (args.action, args.dry_run) {
        (Some(MigrateAction::Status), _) => {
            let status = migrations::status(&db.owner).await?;
            for m in &status {
                say!(
                    "{:>14}  {:<9}  {}",
                    m.version,
                    m.state.to_string(),
                    m.description
                );
            }
            let pending = status
                .iter()
                .filter(|m| m.state == migrations::MigrationState::Pending)
                .count();
            say!("{} applied, {pending} pending", status.len() - pending);
            Ok(())
        }
        (None, true) => {
            let tried = migrations::dry_run(&db.owner).await?;
            if tried.is_empty() {
                say!("dry run: nothing pending; the schema is current");
            } else {
                say!(
                    "dry run: {} migration(s) applied and rolled back: {tried:?}; nothing changed",
                    tried.len()
                );
            }
            Ok(())
        }
        (None, false) => {
            let applied = migrations::apply(&db.owner).await?;
            if applied.is_empty() {
                say!("nothing to apply; the schema is current");
            } else {
                say!("applied {} migration(s): {applied:?}", applied.len());
            }
            Ok(())
        }
    }
}
