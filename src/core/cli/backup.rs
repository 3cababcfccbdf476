//! `plugpos backup create|list|verify ID|restore ID|export-key`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::Value;
use uuid::Uuid;

use crate::core::audit::write::Actor;
use crate::core::backup::pipeline::{self, Progress};
use crate::core::backup::restore::{self, RestoreRequest};
use crate::core::backup::{Backups, Kind, key, targets};
use crate::core::cli::database::CommandDatabase;
use crate::core::config::Config;
use crate::core::data_dir::pid_file::running_server;
use crate::core::data_dir::{DataDir, write_private_file};
use crate::core::settings::Business;
use crate::shared::clock::Clock;
use crate::shared::ids::new_id;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a full backup now and verify it.
    Create {
        /// Leave the verification to the server (the backup is `pending`, never restorable, until
        /// verified; `plugpos serve` verifies pending backups at startup).
        #[arg(long)]
        no_verify: bool,
        /// Take it as the `pre-upgrade` kind (what `plugpos upgrade` does).
        #[arg(long, hide = true)]
        pre_upgrade: bool,
    },
    /// List the backups, newest first (with --from, those at a backup target).
    List {
        /// A backup target's name (from the config file or the settings).
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
    },
    /// Verify a backup: checksum, decrypt, restore into a scratch database, check it.
    Verify { id: Uuid },
    /// Restore a backup (verifies it, backs up the current state first, rolls back on failure).
    /// The server must be stopped; with it running use POST /api/v1/backups/{id}/restore.
    Restore {
        id: Uuid,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Fetch the backup from this backup target first (on a new machine: after
        /// `import-key`, with the target in the config file).
        #[arg(long, value_name = "TARGET")]
        from: Option<String>,
    },
    /// Print the age identity that decrypts this instance's backups (or write it to FILE, 0600).
    /// Keep it off this machine: without it no backup can be restored.
    ExportKey {
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Install an exported backup key (on a new machine, before restoring its backups). Refuses
    /// to replace a different key unless --replace (the old one is kept beside it).
    ImportKey {
        file: PathBuf,
        #[arg(long)]
        replace: bool,
    },
}

pub async fn run(config: &Config, command: BackupCommand) -> anyhow::Result<()> {
    let data_dir = DataDir::prepare(&config.data_dir)?;
    if let BackupCommand::ExportKey { output } = &command {
        let text = key::export(&data_dir.keys())?;
        match output {
            Some(file) => {
                write_private_file(file, text.as_bytes())?;
                eprintln!("backup key written to {} (mode 0600)", file.display());
            }
            None => say!("{}", text.trim_end_matches('\n')),
        }
        return Ok(());
    }
    if let BackupCommand::ImportKey { file, replace } = &command {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let outcome = key::import(&data_dir.keys(), &text, *replace, Clock::system().now())?;
        say!("{outcome}");
        return Ok(());
    }
    if let BackupCommand::Restore { .. } = &command
        && let Some(pid) = running_server(&data_dir)
    {
        bail!(
            "plugpos serve (pid {pid}) is running with this data directory: restore through the API \
             (POST /api/v1/backups/ID/restore), or stop the server first"
        );
    }
    let db = CommandDatabase::open(config, &data_dir).await?;
    let backups = Backups::new(
        &data_dir,
        db.target.clone(),
        config.database.pg_bin_dir.as_deref(),
        Clock::system(),
    );
    let result = execute(config, &db, &backups, command).await;
    db.close().await;
    result
}

/// Runs one `plugpos backup` subcommand. Stays whole: one short arm per subcommand, each
/// printing its own result; the match is the command's table of contents.
async fn execute(
    config: &Config,
    db: &CommandDatabase,
    backups: &Backups,
    command: BackupCommand,
) -> anyhow::Result<()> {
    match command {
        BackupCommand::Create {
            no_verify,
            pre_upgrade,
        } => {
            let id = new_id();
            let kind = if pre_upgrade {
                Kind::PreUpgrade
            } else {
                Kind::Full
            };
            let (progress, shown) = terminal_progress("backup");
            let created = pipeline::create(backups, id, kind, None, &progress).await;
            let verified = match created {
                Ok(manifest) if no_verify => Ok(manifest),
                Ok(_) => pipeline::verify(backups, id, &progress).await,
                Err(e) => Err(e),
            };
            drop(progress);
            let _ = shown.await;
            let manifest = verified.with_context(|| format!("backup {id} failed"))?;
            let status = if no_verify {
                "written, not verified yet"
            } else {
                "valid"
            };
            say!(
                "backup {id} is {status} ({} bytes, sha256 {})",
                manifest.size_bytes,
                manifest.sha256
            );
        }
        BackupCommand::List { from: Some(name) } => {
            let opened = targets::open(&target_named(config, db, &name).await?, &config.data_dir)?;
            print_list(&opened.manifests().await?)?;
        }
        BackupCommand::List { from: None } => {
            print_list(&backups.list())?;
        }
        BackupCommand::Verify { id } => {
            let (progress, shown) = terminal_progress("verify");
            let verified = pipeline::verify(backups, id, &progress).await;
            drop(progress);
            let _ = shown.await;
            let manifest = verified.with_context(|| format!("backup {id} is not valid"))?;
            say!(
                "backup {id} is valid (restored and checked; {} tables)",
                manifest.row_counts.len()
            );
        }
        BackupCommand::Restore { id, yes, from } => {
            let opened = match &from {
                Some(name) => Some(targets::open(
                    &target_named(config, db, name).await?,
                    &config.data_dir,
                )?),
                None => None,
            };
            // What is confirmed: the local backup, or the target's copy (nothing is fetched
            // before the confirmation).
            let created_at = match &opened {
                Some(opened) => {
                    opened
                        .manifests()
                        .await?
                        .into_iter()
                        .find(|m| m.id == id)
                        .with_context(|| {
                            format!("target {} has no backup {id}", opened.target.name)
                        })?
                        .created_at
                }
                None => backups.load(id)?.created_at,
            };
            if !yes {
                // A database without a shop yet (a new machine) has no name to type.
                let name = match db.pool.acquire().await {
                    Ok(mut conn) => Business::load(&mut conn)
                        .await
                        .ok()
                        .flatten()
                        .map(|b| b.name),
                    Err(_) => None,
                };
                confirm(name.as_deref(), &created_at.to_rfc3339())?;
            }
            if let Some(opened) = &opened {
                eprintln!("fetching backup {id} from {}...", opened.target.name);
                targets::fetch(backups, opened, id).await?;
            }
            let (progress, shown) = terminal_progress("restore");
            let outcome = restore::restore(
                backups,
                RestoreRequest {
                    backup_id: id,
                    actor: Actor::system("plugpos backup restore"),
                    pool: &db.owner,
                    maintenance: None,
                    job: None,
                },
                &progress,
            )
            .await;
            drop(progress);
            let _ = shown.await;
            let outcome = outcome.with_context(|| {
                format!("restore of backup {id} failed; the database was not changed")
            })?;
            let timings = outcome.get("timings").cloned().unwrap_or_default();
            match outcome.get("pre_restore_backup_id").and_then(Value::as_str) {
                Some(pre) => {
                    say!("restored backup {id}; the previous state is in backup {pre}");
                    say!("timings: {timings}");
                    // Verifying the safety backup takes as long as a restore: the server does
                    // it at its next start (it verifies every pending backup), or the admin now.
                    say!(
                        "the pre-restore backup is pending verification: `plugpos serve` verifies it at start, or run `plugpos backup verify {pre}`"
                    );
                }
                None => {
                    say!(
                        "restored backup {id} (the database held no shop before: nothing to keep)"
                    );
                    say!("timings: {timings}");
                }
            }
        }
        BackupCommand::ExportKey { .. } | BackupCommand::ImportKey { .. } => {}
    }
    Ok(())
}

/// The backup target `name`: the config file's, or the `backup.targets` setting's when the
/// database has one.
async fn target_named(
    config: &Config,
    db: &CommandDatabase,
    name: &str,
) -> anyhow::Result<targets::Target> {
    let setting: Option<Value> =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'backup.targets'")
            .fetch_optional(&db.pool)
            .await
            .ok()
            .flatten();
    let all = targets::in_force(&config.backup.targets, setting.as_ref());
    let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
    all.iter()
        .find(|t| t.name == name)
        .cloned()
        .with_context(|| {
            format!(
                "there is no backup target named {name} (known: {}); on a new machine add it to the config file",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            )
        })
}

/// Prints backups as a table, newest first.
fn print_list(manifests: &[crate::core::backup::Manifest]) -> anyhow::Result<()> {
    say!(
        "{:<36}  {:<11}  {:<20}  {:>12}  {:<8}  verified",
        "id",
        "kind",
        "created",
        "bytes",
        "status"
    );
    for m in manifests {
        say!(
            "{:<36}  {:<11}  {:<20}  {:>12}  {:<8}  {}",
            m.id,
            m.kind.as_str(),
            m.created_at.format("%Y-%m-%d %H:%M:%S"),
            m.size_bytes,
            serde_json::to_value(m.status)?.as_str().unwrap_or_default(),
            m.verified_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".to_owned()),
        );
    }
    Ok(())
}

/// Asks the user to type the business name, or `restore` when the database holds no shop yet
/// (refuses without a terminal: use `--yes`).
fn confirm(business: Option<&str>, created: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("a restore replaces the whole database: confirm on a terminal or pass --yes");
    }
    let expected = match business {
        Some(name) => {
            eprint!(
                "This replaces all data of \"{name}\" with the backup from {created}.\nType the business name to continue: "
            );
            name
        }
        None => {
            eprint!(
                "This restores the backup from {created} into this data directory, which holds no shop yet.\nType restore to continue: "
            );
            "restore"
        }
    };
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != expected {
        bail!("not confirmed; nothing was changed");
    }
    Ok(())
}

/// Shows the steps on a terminal (a spinner with the current step); nothing when not attached to one.
fn terminal_progress(what: &'static str) -> (Progress, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let show = std::io::stderr().is_terminal();
    let handle = tokio::spawn(async move {
        let bar = show.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        while let Some(step) = rx.recv().await {
            if let Some(bar) = &bar {
                let name = step
                    .get("step")
                    .and_then(Value::as_str)
                    .unwrap_or("working");
                let bytes = step
                    .get("dumped_bytes")
                    .or_else(|| step.get("restored_bytes"))
                    .and_then(Value::as_u64)
                    .map(|b| format!(" ({} MiB)", b >> 20))
                    .unwrap_or_default();
                bar.set_message(format!("{what}: {name}{bytes}"));
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    });
    (Progress::new(tx), handle)
}
