//! Upgrades from a signed update package, with automatic rollback (`plugpos upgrade FILE`).
//!
//! The steps, each said as it is done:
//! 1. **verify**: the package's signature (release key or `upgrade.trusted_keys`), every file's
//!    hash, the architecture, no downgrade, and the new binary runs here and is what the
//!    manifest says.
//! 2. **preflight**: the binary's directory is writable and both it and the data directory have
//!    room (twice the binary; twice the newest backup).
//! 3. **stop** the server: `systemctl stop plugpos` where the service runs, else SIGTERM to the
//!    pid in `<data_dir>/plugpos.pid`.
//! 4. **backup**: a `pre-upgrade` backup, verified by restoring it beside the live database.
//! 5. **swap**: the new binary is written beside the installed one and renamed over it (atomic);
//!    the installed one stays as `<binary>.previous`.
//! 6. **migrate**: the new binary applies its migrations, all in one transaction.
//! 7. **start** the new server (the service, or `plugpos serve` in the background) and wait for
//!    `/health/ready` (which also fails on pending migrations).
//! 8. **checks**: the new binary checks the migrations, the core tables and the audit chain from
//!    its first record, including that the record the backup ended on is unchanged; then a
//!    login: with `--login USER` a real one, else an unknown user must be refused as such.
//!
//! A failure from step 5 on rolls back: stop what was started, put `<binary>.previous` back,
//! restore the pre-upgrade backup with the old binary, start the old server as it ran before.
//! Every attempt that got past step 4 is appended to the version history.
//!
//! The database steps run as child processes of the binary concerned (the new one migrates and
//! checks; the old one backs up and restores), as the data directory's owner when run by root:
//! the `.deb` installs the binary as root and runs the server as `plugpos`.

pub mod history;
pub mod package;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

use crate::core::backup::Backups;
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::data_dir::pid_file::running_server;
use crate::shared::clock::Clock;
use crate::shared::ids::new_id;

use self::history::{Entry, Outcome};
use self::package::{BinaryFacts, Verified};

/// How long the new server may take to become ready (it migrated already).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a stopping server may take (its shutdown grace is 20 s by default).
const STOP_TIMEOUT: Duration = Duration::from_secs(90);
/// Room for the pre-upgrade backup and its check, in multiples of the newest (compressed) backup:
/// the check restores the whole database beside the live one.
const BACKUP_ROOM_FACTOR: u64 = 8;

/// What the admin asked for.
pub struct Request {
    pub package: PathBuf,
    pub reinstall: bool,
    /// A real login for the post-upgrade check.
    pub login: Option<(String, SecretString)>,
    /// The `--config` the command was given: the children get it too.
    pub config_file: Option<PathBuf>,
    /// The binary to replace (the running one unless a test says otherwise).
    pub binary: PathBuf,
}

/// The user interface: each step's line, and the go-ahead before anything is stopped.
pub trait Ui {
    fn step(&self, line: &str);
    fn confirm(&self, plan: &str) -> anyhow::Result<()>;
    /// A long step begins (a terminal shows it turning until the step's line).
    fn working(&self, _what: &str) {}
}

/// How the server was running before the upgrade, so it is left the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    Service,
    Process,
    Stopped,
}

/// Runs the whole upgrade; `Ok` with the history entry when the new version runs and passed
/// its checks, `Err` with what failed (and how the rollback went) otherwise.
pub async fn upgrade(config: &Config, request: Request, ui: &dyn Ui) -> anyhow::Result<Entry> {
    let data_dir = DataDir::existing(&config.data_dir)?;
    let current = BinaryFacts::current();
    let trusted = package::trusted_keys(&config.upgrade.trusted_keys)
        .map_err(|e| anyhow::anyhow!("upgrade.trusted_keys: {e}"))?;
    let attempt = new_id();
    // Staged beside the binary, never in the data directory: the service's user owns that and
    // could swap a file between the check and the install.
    let binary_dir = request
        .binary
        .parent()
        .context("the binary has no directory")?
        .to_owned();
    let staging = binary_dir.join(format!(".plugpos-upgrade-{}", attempt.simple()));
    writable(&binary_dir)?;
    // Staging left by an upgrade that was killed.
    for entry in std::fs::read_dir(&binary_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".plugpos-upgrade-")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let outcome = async {
        // 1. verify
        let verified = package::open(&request.package, &trusted, &staging)?;
        package::check_applicable(&verified.manifest, &current.version, request.reinstall)?;
        let facts = BinaryFacts::of(&verified.binary).map_err(anyhow::Error::msg)?;
        if facts.version != verified.manifest.version || facts.arch != verified.manifest.arch {
            bail!(
                "the package's binary says it is {} for {}, its manifest says {} for {}",
                facts.version,
                facts.arch,
                verified.manifest.version,
                verified.manifest.arch
            );
        }
        ui.step(&format!(
            "verify: package of plugpos {} ({}, schema {}) signed by {}; hashes match",
            verified.manifest.version,
            verified.manifest.arch,
            verified.manifest.schema_version,
            short_key(&verified.signed_by)
        ));
        let owner = Owner::of(data_dir.root())?;
        // 2. preflight
        preflight(&request.binary, &verified, &data_dir, config)?;
        ui.step(
            "preflight: the data directory holds an instance, the binary's directory is writable, \
             and there is room for the binary and the backup",
        );
        let running = server_state(&data_dir);
        ui.confirm(&format!(
            "Upgrade plugpos {} to {}: the server ({}) stops, a pre-upgrade backup is taken and \
             verified, the binary {} is replaced (the old one kept as {}.previous), the database \
             is migrated and checked. Any failure puts the old version and data back.",
            current.version,
            verified.manifest.version,
            match running {
                Running::Service => "systemd service plugpos",
                Running::Process => "plugpos serve",
                Running::Stopped => "not running now",
            },
            request.binary.display(),
            request.binary.display()
        ))?;
        let children = Children {
            config_file: request.config_file.clone(),
            data_dir: data_dir.root().to_owned(),
            owner,
        };
        Ok::<_, anyhow::Error>((verified, running, children))
    }
    .await;
    let (verified, running, children) = match outcome {
        Ok(prepared) => prepared,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let result = run_steps(
        config, &request, &data_dir, &verified, running, &children, ui,
    )
    .await;
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Steps 3 to 8, and the rollback. Stays whole: the upgrade's steps in their order, where a
/// failure before the swap restarts the old server and one after it rolls back exactly what was
/// done; split, that bookkeeping would travel between the pieces.
async fn run_steps(
    config: &Config,
    request: &Request,
    data_dir: &DataDir,
    verified: &Verified,
    running: Running,
    children: &Children,
    ui: &dyn Ui,
) -> anyhow::Result<Entry> {
    let mut entry = Entry {
        at: Clock::system().now(),
        from_version: env!("CARGO_PKG_VERSION").to_owned(),
        to_version: verified.manifest.version.clone(),
        outcome: Outcome::Upgraded,
        failed_step: None,
        error: None,
        backup_id: None,
        package_sha256: verified.sha256.clone(),
    };
    // 3. stop
    ui.working("stopping the server");
    if let Err(e) = stop_server(running, data_dir).await {
        let restarted = match running_server(data_dir) {
            None => start_server(running, &request.binary, children).await,
            Some(_) => Ok(()),
        };
        bail!(
            "stop: {e:#}; nothing was changed{}",
            restart_note(&restarted)
        );
    }
    ui.step(&match running {
        Running::Service => "stop: systemctl stop plugpos".to_owned(),
        Running::Process => "stop: plugpos serve stopped".to_owned(),
        Running::Stopped => "stop: the server was not running".to_owned(),
    });
    // 4. backup (the old binary: it knows the data as it is). A failure here changed nothing:
    // the server is started again as it was.
    ui.working(
        "taking the pre-upgrade backup and verifying it by restoring it beside the database",
    );
    let backup = children.run(&request.binary, &["backup", "create", "--pre-upgrade"]);
    let backup_id = match backup.and_then(|out| parse_backup_id(&out)) {
        Ok(id) => id,
        Err(e) => {
            let restarted = start_server(running, &request.binary, children).await;
            entry.outcome = Outcome::Aborted;
            entry.failed_step = Some("backup".to_owned());
            entry.error = Some(format!("{e:#}"));
            let _ = children.record(&entry);
            bail!(
                "backup: the pre-upgrade backup failed, nothing was changed: {e:#}{}",
                restart_note(&restarted)
            );
        }
    };
    entry.backup_id = Some(backup_id);
    ui.step(&format!(
        "backup: pre-upgrade backup {backup_id} taken and verified"
    ));

    // 5 to 8; any failure rolls back.
    let previous = previous_path(&request.binary);
    let mut started = Running::Stopped;
    let mut swapped = false;
    let attempt = async {
        swap(&verified.binary, &request.binary, &previous).map_err(|e| ("swap", e))?;
        swapped = true;
        ui.step(&format!(
            "swap: {} is now {}; the previous binary is {}",
            request.binary.display(),
            verified.manifest.version,
            previous.display()
        ));
        ui.working("migrating the database");
        let applied = children
            .run(&request.binary, &["migrate"])
            .map_err(|e| ("migrate", e))?;
        ui.step(&format!("migrate: {}", applied.trim()));
        ui.working("starting the new server and waiting for it to be ready");
        started = if running == Running::Stopped {
            Running::Process
        } else {
            running
        };
        start_server(started, &request.binary, children)
            .await
            .map_err(|e| ("start", e))?;
        wait_ready(config, READY_TIMEOUT)
            .await
            .map_err(|e| ("start", e))?;
        ui.step("start: the new server is ready");
        ui.working("checking the migrations, the core tables, the audit chain and a login");
        let head = verified_head(data_dir, backup_id);
        let mut args = vec!["upgrade-check".to_owned()];
        if let Some(head) = head {
            args.push("--audit-head".to_owned());
            args.push(head);
        }
        let checked = children
            .run(
                &request.binary,
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .map_err(|e| ("checks", e))?;
        ui.step(&format!("checks: {}", checked.trim()));
        let login = login_check(config, request.login.as_ref())
            .await
            .map_err(|e| ("checks", e))?;
        ui.step(&format!("checks: {login}"));
        Ok::<_, (&str, anyhow::Error)>(())
    }
    .await;
    match attempt {
        Ok(()) => {
            if running == Running::Stopped {
                stop_server(Running::Process, data_dir).await?;
                ui.step("stop: the server was not running before the upgrade; it is stopped again");
            }
            children.record(&entry)?;
            Ok(entry)
        }
        Err((step, e)) => {
            ui.step(&format!("{step}: FAILED: {e:#}"));
            ui.step("rollback: putting the previous version and the pre-upgrade backup back");
            entry.failed_step = Some(step.to_owned());
            let rolled = rollback(
                config, request, data_dir, running, started, swapped, backup_id, children, ui,
            )
            .await;
            let message = match &rolled {
                Ok(()) => {
                    entry.outcome = Outcome::RolledBack;
                    entry.error = Some(format!("{e:#}"));
                    format!(
                        "upgrade to {} failed at {step}: {e:#}; rolled back to {} (binary and data from backup {backup_id})",
                        verified.manifest.version,
                        env!("CARGO_PKG_VERSION")
                    )
                }
                Err(rollback_error) => {
                    entry.outcome = Outcome::RollbackFailed;
                    entry.error = Some(format!("{e:#}; the rollback failed: {rollback_error:#}"));
                    format!(
                        "upgrade to {} failed at {step}: {e:#}; THE ROLLBACK FAILED: {rollback_error:#}. \
                         The previous binary is {}, the pre-upgrade backup is {backup_id}: see docs/operations.md, \"Upgrading\"",
                        verified.manifest.version,
                        previous.display()
                    )
                }
            };
            let _ = children.record(&entry);
            bail!("{message}")
        }
    }
}

/// Puts the previous binary back, restores the pre-upgrade backup with it and starts it as the
/// server ran before. Each step is tried even when one before it failed (a shop without its
/// server is the worst outcome): the errors are reported together.
#[allow(clippy::too_many_arguments)]
async fn rollback(
    config: &Config,
    request: &Request,
    data_dir: &DataDir,
    running: Running,
    started: Running,
    swapped: bool,
    backup_id: uuid::Uuid,
    children: &Children,
    ui: &dyn Ui,
) -> anyhow::Result<()> {
    let mut failures: Vec<String> = Vec::new();
    if started != Running::Stopped || running_server(data_dir).is_some() {
        let how = if started == Running::Stopped {
            Running::Process
        } else {
            started
        };
        match stop_server(how, data_dir).await {
            Ok(()) => ui.step("rollback: the new server is stopped"),
            Err(e) => failures.push(format!("stopping the new server: {e:#}")),
        }
    }
    let previous = previous_path(&request.binary);
    if swapped {
        match put_back(&previous, &request.binary) {
            Ok(()) => ui.step(&format!(
                "rollback: {} is the previous version again",
                request.binary.display()
            )),
            Err(e) => failures.push(format!("putting the previous binary back: {e:#}")),
        }
    }
    let id = backup_id.to_string();
    ui.working("restoring the pre-upgrade backup");
    match children.run(&request.binary, &["backup", "restore", &id, "--yes"]) {
        Ok(_) => ui.step(&format!(
            "rollback: the data of backup {backup_id} is restored"
        )),
        Err(e) => failures.push(format!("restoring the pre-upgrade backup: {e:#}")),
    }
    if running != Running::Stopped && running_server(data_dir).is_none() {
        ui.working("starting the previous server");
        let started = match start_server(running, &request.binary, children).await {
            Ok(()) => wait_ready(config, READY_TIMEOUT).await,
            Err(e) => Err(e),
        };
        match started {
            Ok(()) => ui.step("rollback: the previous server is running again"),
            Err(e) => failures.push(format!("starting the previous server: {e:#}")),
        }
    }
    match failures.is_empty() {
        true => Ok(()),
        false => bail!("{}", failures.join("; ")),
    }
}

fn short_key(hex: &str) -> String {
    if hex == package::RELEASE_KEY.trim() {
        "the release key".to_owned()
    } else {
        format!("trusted key {}…", &hex[..16.min(hex.len())])
    }
}

fn restart_note(restarted: &anyhow::Result<()>) -> String {
    match restarted {
        Ok(()) => String::new(),
        Err(e) => format!(" (and the server did not start again: {e:#})"),
    }
}

/// The data directory's owner: the children run as it when this runs as root.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

impl Owner {
    fn of(dir: &Path) -> anyhow::Result<Owner> {
        let meta =
            std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        Ok(Owner {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

/// Runs plugpos subcommands for the upgrade.
struct Children {
    config_file: Option<PathBuf>,
    data_dir: PathBuf,
    owner: Owner,
}

impl Children {
    fn command(&self, binary: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(binary);
        if let Some(file) = &self.config_file {
            command.arg("--config").arg(file);
        }
        command.arg("--data-dir").arg(&self.data_dir).args(args);
        if nix::unistd::geteuid().is_root() && self.owner.uid != 0 {
            command.uid(self.owner.uid).gid(self.owner.gid);
        }
        command
    }

    /// Runs to completion; its standard error goes to the terminal (progress), its output is
    /// returned. Fails with the command's last error line.
    fn run(&self, binary: &Path, args: &[&str]) -> anyhow::Result<String> {
        let output = self
            .command(binary, args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            bail!(
                "`plugpos {}` failed ({}): {}",
                args.join(" "),
                output.status,
                last.trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `plugpos serve` in the background, detached from this terminal (it logs to its files).
    fn spawn_server(&self, binary: &Path) -> anyhow::Result<()> {
        // Never waited for: it outlives this command on purpose.
        #[allow(clippy::zombie_processes)]
        self.command(binary, &["serve"])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {} serve", binary.display()))?;
        Ok(())
    }

    /// Appends `entry` to the version history as the data directory's owner: run by root, the
    /// write goes through a child of this very binary (`/proc/self/exe`, whatever is installed
    /// now) with the owner's ids, so root never writes into a directory another user controls.
    fn record(&self, entry: &Entry) -> anyhow::Result<()> {
        if !(nix::unistd::geteuid().is_root() && self.owner.uid != 0) {
            return history::append(&self.data_dir, entry);
        }
        let line = serde_json::to_string(entry)?;
        self.run(Path::new("/proc/self/exe"), &["upgrade-record", &line])
            .map(|_| ())
            .context("cannot record the attempt in the version history")
    }
}

fn parse_backup_id(output: &str) -> anyhow::Result<uuid::Uuid> {
    output
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .with_context(|| format!("the backup printed no id: {}", output.trim()))
}

fn previous_path(binary: &Path) -> PathBuf {
    let mut name = binary.file_name().unwrap_or_default().to_owned();
    name.push(".previous");
    binary.with_file_name(name)
}

fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(path)
        .with_context(|| format!("cannot read the free space of {}", path.display()))?;
    Ok(stat.blocks_available() * stat.fragment_size())
}

/// Can this process replace files in `dir`?
fn writable(dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(format!(".plugpos-upgrade-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").with_context(|| {
        format!(
            "preflight: cannot write in {} (run the upgrade as root?); nothing was changed",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn preflight(
    binary: &Path,
    verified: &Verified,
    data_dir: &DataDir,
    config: &Config,
) -> anyhow::Result<()> {
    if !data_dir.keys().is_dir() {
        bail!(
            "preflight: {} holds no plugpos instance (no keys/); is --config or --data-dir right? nothing was changed",
            data_dir.root().display()
        );
    }
    let dir = binary.parent().context("the binary has no directory")?;
    let size = std::fs::metadata(&verified.binary)?.len();
    let free = free_bytes(dir)?;
    if free < size * 2 {
        bail!(
            "preflight: {} has {} MiB free, the new binary needs {} MiB; nothing was changed",
            dir.display(),
            free >> 20,
            (size * 2) >> 20
        );
    }
    let backups = Backups::new(
        data_dir,
        crate::core::backup::DbTarget::new(""),
        config.database.pg_bin_dir.as_deref(),
        Clock::system(),
    );
    // The backup is compressed; checking it restores the whole database beside the live one.
    let newest = backups
        .list()
        .iter()
        .map(|m| m.size_bytes)
        .max()
        .unwrap_or(0);
    let needed = newest * BACKUP_ROOM_FACTOR + (512 << 20);
    let free = free_bytes(data_dir.root())?;
    if free < needed {
        bail!(
            "preflight: the data directory has {} MiB free; the pre-upgrade backup and its check need about {} MiB \
             ({BACKUP_ROOM_FACTOR} times the newest backup, plus 512 MiB); free some space first; nothing was changed",
            free >> 20,
            needed >> 20
        );
    }
    Ok(())
}

fn systemd_active() -> bool {
    Path::new("/run/systemd/system").is_dir()
        && Command::new("systemctl")
            .args(["is-active", "--quiet", "plugpos.service"])
            .status()
            .is_ok_and(|s| s.success())
}

fn server_state(data_dir: &DataDir) -> Running {
    if systemd_active() {
        Running::Service
    } else if running_server(data_dir).is_some() {
        Running::Process
    } else {
        Running::Stopped
    }
}

async fn stop_server(how: Running, data_dir: &DataDir) -> anyhow::Result<()> {
    match how {
        Running::Service => {
            let status = Command::new("systemctl")
                .args(["stop", "plugpos.service"])
                .status()?;
            if !status.success() {
                bail!("systemctl stop plugpos failed ({status})");
            }
        }
        Running::Process | Running::Stopped => {
            let Some(pid) = running_server(data_dir) else {
                return Ok(());
            };
            let pid: i32 = pid
                .parse()
                .with_context(|| format!("the pid file holds `{pid}`"))?;
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            )
            .with_context(|| format!("cannot stop plugpos serve (pid {pid})"))?;
        }
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while running_server(data_dir).is_some() {
        if Instant::now() > deadline {
            bail!(
                "the server did not stop within {} s",
                STOP_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

async fn start_server(how: Running, binary: &Path, children: &Children) -> anyhow::Result<()> {
    match how {
        Running::Service => {
            let status = Command::new("systemctl")
                .args(["start", "plugpos.service"])
                .status()?;
            if !status.success() {
                bail!("systemctl start plugpos failed ({status}); see journalctl -u plugpos");
            }
            Ok(())
        }
        Running::Process => children.spawn_server(binary),
        Running::Stopped => Ok(()),
    }
}

/// Keeps `binary` as `previous` (a hard link, or a copy), then renames `new` (staged in the same
/// file system, beside it) over `binary`: the installed binary is the old one or the new one,
/// never a mixture.
fn swap(new: &Path, binary: &Path, previous: &Path) -> anyhow::Result<()> {
    let dir = binary.parent().context("the binary has no directory")?;
    let _ = std::fs::remove_file(previous);
    if std::fs::hard_link(binary, previous).is_err() {
        std::fs::copy(binary, previous)
            .with_context(|| format!("cannot keep {}", previous.display()))?;
    }
    std::fs::rename(new, binary).with_context(|| format!("cannot replace {}", binary.display()))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    Ok(())
}

/// Puts `previous` back as `binary` (atomically; `previous` stays for the record).
fn put_back(previous: &Path, binary: &Path) -> anyhow::Result<()> {
    let dir = binary.parent().context("the binary has no directory")?;
    let incoming = dir.join(format!(".plugpos.rollback-{}", std::process::id()));
    std::fs::copy(previous, &incoming)?;
    std::fs::File::open(&incoming).and_then(|f| f.sync_all())?;
    std::fs::rename(&incoming, binary)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    Ok(())
}

/// `SEQ:HASH` of the audit record the pre-upgrade backup ended on.
fn verified_head(data_dir: &DataDir, backup_id: uuid::Uuid) -> Option<String> {
    let backups = Backups::new(
        data_dir,
        crate::core::backup::DbTarget::new(""),
        None,
        Clock::system(),
    );
    let head = backups.load(backup_id).ok()?.audit_chain_head?;
    Some(format!("{}:{}", head.seq, head.hash))
}

/// Where the server answers, from this machine.
fn local_address(config: &Config) -> (String, u16) {
    let host = match config.http.bind.to_string().as_str() {
        "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "::1".to_owned(),
        other => other.to_owned(),
    };
    (host, config.http.port)
}

async fn wait_ready(config: &Config, timeout: Duration) -> anyhow::Result<()> {
    let (host, port) = local_address(config);
    let tls = pinned_tls(config)?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("nothing answered");
    while Instant::now() < deadline {
        match http::request(&host, port, tls.clone(), "GET", "/health/ready", None).await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => {
                last = format!(
                    "/health/ready answered {status}: {}",
                    body.chars().take(300).collect::<String>()
                )
            }
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "the server was not ready within {} s: {last}",
        timeout.as_secs()
    )
}

/// A login against the new server: the admin's own (`--login`), or an unknown user, which must
/// be refused as `auth.invalid_credentials` (the whole login path ran: database, password hash).
async fn login_check(
    config: &Config,
    login: Option<&(String, SecretString)>,
) -> anyhow::Result<String> {
    let (host, port) = local_address(config);
    let (username, password) = match login {
        Some((user, password)) => (user.clone(), password.expose_secret().to_owned()),
        None => (
            format!("upgrade-check-{}", new_id().simple()),
            new_id().to_string(),
        ),
    };
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let tls = pinned_tls(config)?;
    let (status, answer) =
        http::request(&host, port, tls, "POST", "/api/v1/auth/login", Some(&body)).await?;
    let code = serde_json::from_str::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default();
    match (login.is_some(), status, code.as_str()) {
        (true, 200, _) => Ok(format!("login as {username} works")),
        (true, 401, "auth.mfa_required") => Ok(format!("login as {username} works (the password was accepted; it asks for the second factor)")),
        (false, 401, "auth.invalid_credentials") => Ok("the login endpoint works (an unknown user is refused; --login USER checks a real login)".to_owned()),
        _ => bail!("the login answered {status} {code}: {}", answer.chars().take(300).collect::<String>()),
    }
}

/// With `[http.tls]` on, the checks speak TLS to the server, trusting exactly the configured
/// certificate (as a till pins its fingerprint).
fn pinned_tls(config: &Config) -> anyhow::Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
    let Some((cert, _)) = config.http.tls.files(&config.data_dir) else {
        return Ok(None);
    };
    let leaf = crate::core::http::tls::leaf(&cert)?;
    Ok(Some(crate::core::http::tls::pinned_client(leaf)))
}

/// Enough HTTP/1.1 for the checks against the local server (`Connection: close`; over TLS when
/// given a client configuration).
mod http {
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::Context;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    pub async fn request(
        host: &str,
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let exchange = async {
            let stream = tokio::net::TcpStream::connect((host, port)).await?;
            match tls {
                None => send(stream, host, port, method, path, body).await,
                Some(config) => {
                    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                    let stream = tokio_rustls::TlsConnector::from(config)
                        .connect(name, stream)
                        .await?;
                    send(stream, host, port, method, path, body).await
                }
            }
        };
        let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .context("no answer within 10 s")?
            .with_context(|| format!("cannot reach {host}:{port}"))?;
        parse(&raw)
    }

    async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        host: &str,
        port: u16,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<Vec<u8>> {
        {
            let body = body.unwrap_or("");
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok(raw)
        }
    }

    fn parse(raw: &[u8]) -> anyhow::Result<(u16, String)> {
        let text = String::from_utf8_lossy(raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("not an HTTP answer")?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        Ok((
            status,
            if chunked {
                dechunk(body)
            } else {
                body.to_owned()
            },
        ))
    }

    fn dechunk(mut body: &str) -> String {
        let mut out = String::new();
        while let Some((size, rest)) = body.split_once("\r\n") {
            let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
                break;
            };
            if size == 0 || rest.len() < size {
                break;
            }
            out.push_str(&rest[..size]);
            body = rest[size..].trim_start_matches("\r\n");
        }
        out
    }
}
