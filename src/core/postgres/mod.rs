//! The managed PostgreSQL cluster under `<data_dir>/pg`.
//!
//! It listens only on a Unix socket inside the data directory (no TCP port: nothing clashes and
//! nothing on the LAN can reach it) and runs as an unprivileged user when plugpos runs as root,
//! because PostgreSQL refuses to run as root. `plugpos serve` runs it as a supervised child
//! (see [`supervisor`]); the CLI starts it detached with `pg_ctl` for the duration of a command.

pub mod supervisor;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use crate::core::data_dir::DataDir;

/// The name of the business database inside the managed cluster.
pub const DATABASE_NAME: &str = "plugpos";
/// The cluster's superuser (created by initdb; trusted only over the private socket). It owns
/// the schema and runs migrations.
pub const SUPERUSER: &str = "postgres";
/// The least-privileged role the server works as (see `migrations/0004_app_role.sql`).
pub const APP_ROLE: &str = "plugpos_app";
/// The system user the cluster runs as when plugpos runs as root.
pub const SYSTEM_USER: &str = "postgres";
/// Longest socket path the kernel accepts is 107 bytes; leave room for the terminating NUL.
const MAX_SOCKET_PATH: usize = 103;
const SOCKET_FILE: &str = ".s.PGSQL.5432";

/// How to reach PostgreSQL's server programs.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub initdb: PathBuf,
    pub pg_ctl: PathBuf,
    pub postgres: PathBuf,
}

impl PgBinaries {
    /// Finds `initdb`, `pg_ctl` and `postgres` in `pinned` if given, else on `path_var` (PATH),
    /// else in the newest `<lib_root>/<version>/bin` (Debian's `/usr/lib/postgresql`).
    pub fn find(
        pinned: Option<&Path>,
        path_var: Option<&str>,
        lib_root: &Path,
    ) -> anyhow::Result<PgBinaries> {
        let candidates: Vec<PathBuf> = match pinned {
            Some(dir) => vec![dir.to_owned()],
            None => {
                let mut dirs: Vec<PathBuf> = path_var
                    .unwrap_or("")
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect();
                let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir(lib_root)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|e| {
                        Some((
                            e.file_name().to_str()?.parse::<u32>().ok()?,
                            e.path().join("bin"),
                        ))
                    })
                    .collect();
                versioned.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
                dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
                dirs
            }
        };
        for dir in &candidates {
            let bin = |name: &str| dir.join(name);
            if ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|n| is_executable(&bin(n)))
            {
                return Ok(PgBinaries {
                    initdb: bin("initdb"),
                    pg_ctl: bin("pg_ctl"),
                    postgres: bin("postgres"),
                });
            }
        }
        let looked = match pinned {
            Some(dir) => format!("in {} (database.pg_bin_dir)", dir.display()),
            None => format!("on PATH or under {}/<version>/bin", lib_root.display()),
        };
        bail!(
            "PostgreSQL server programs (initdb, pg_ctl, postgres) not found {looked}; install them \
             (Debian/Ubuntu: `apt-get install postgresql`), set database.pg_bin_dir, or set database.url \
             to use an existing PostgreSQL"
        )
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The unprivileged account the cluster's processes run as (when plugpos runs as root).
#[derive(Debug, Clone, Copy)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Options for throwaway clusters; production clusters use the defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// Turns off fsync and synchronous commit. Only for test clusters that are thrown away.
    pub unsafe_fast: bool,
}

/// A PostgreSQL cluster owned by this instance.
#[derive(Debug, Clone)]
pub struct ManagedCluster {
    bin: PgBinaries,
    pgdata: PathBuf,
    run_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    work_dir: PathBuf,
    run_as: Option<RunAs>,
    options: ClusterOptions,
}

impl ManagedCluster {
    /// Describes the cluster of `data_dir` (nothing is started or created yet).
    pub fn new(
        data_dir: &DataDir,
        pg_bin_dir: Option<&Path>,
        options: ClusterOptions,
    ) -> anyhow::Result<Self> {
        let path_var = std::env::var("PATH").ok();
        let bin = PgBinaries::find(
            pg_bin_dir,
            path_var.as_deref(),
            Path::new("/usr/lib/postgresql"),
        )?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name(SYSTEM_USER)
                .context("cannot look up the postgres system user")?
                .with_context(|| {
                    format!(
                        "plugpos runs as root and PostgreSQL refuses to: create an unprivileged `{SYSTEM_USER}` \
                         system user (`useradd --system {SYSTEM_USER}`) or run plugpos as a normal user"
                    )
                })?;
            Some(RunAs {
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            })
        } else {
            None
        };
        let run_dir = data_dir.root().join("run");
        let socket_dir = socket_dir_for(&run_dir);
        Ok(ManagedCluster {
            bin,
            pgdata: data_dir.root().join("pg"),
            run_dir,
            socket_dir,
            log_file: data_dir.logs().join("postgres.log"),
            work_dir: data_dir.root().to_owned(),
            run_as,
            options,
        })
    }

    /// `<data_dir>/pg`.
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// The directory holding the cluster's socket (inside the data directory, or a short link to it).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The file PostgreSQL's own messages go to.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Has `initdb` been run?
    pub fn is_initialized(&self) -> bool {
        self.pgdata.join("PG_VERSION").exists()
    }

    /// Connection options for `database` over the private socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        self.connect_options_as(database, SUPERUSER)
    }

    /// Connection options for `database` as `role` over the private socket.
    pub fn connect_options_as(&self, database: &str, role: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .username(role)
            .database(database)
            .application_name("plugpos")
            .disable_statement_logging()
    }

    /// Creates the directories (and the short socket link for deep data directories), owned by the
    /// cluster's user, and runs `initdb` if the cluster does not exist yet.
    pub async fn ensure_initialized(&self) -> anyhow::Result<()> {
        self.prepare_dirs()?;
        if self.is_initialized() {
            return Ok(());
        }
        let mut cmd = self.command(&self.bin.initdb);
        cmd.arg("-D").arg(&self.pgdata).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]);
        if self.options.unsafe_fast {
            cmd.arg("--no-sync");
        }
        let out = cmd
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.bin.initdb.display()))?;
        if !out.status.success() {
            bail!(
                "initdb failed for {}: {}",
                self.pgdata.display(),
                last_lines(&String::from_utf8_lossy(&out.stderr), 3)
            );
        }
        Ok(())
    }

    fn prepare_dirs(&self) -> anyhow::Result<()> {
        if let Some(run_as) = self.run_as {
            check_reachable(&self.work_dir, run_as)?;
        }
        for dir in [&self.pgdata, &self.run_dir] {
            if !dir.exists() {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .with_context(|| format!("cannot set permissions of {}", dir.display()))?;
            }
            self.chown(dir)?;
        }
        if !self.log_file.exists() {
            fs::write(&self.log_file, b"")
                .with_context(|| format!("cannot create {}", self.log_file.display()))?;
        }
        self.chown(&self.log_file)?;
        // The cluster's user opens its log by path: its group may pass through the log
        // directory (0750), which stays ours.
        if let (Some(run_as), Some(logs)) = (self.run_as, self.log_file.parent()) {
            std::os::unix::fs::chown(logs, None, Some(run_as.gid)).with_context(|| {
                format!("cannot give {} to the {SYSTEM_USER} group", logs.display())
            })?;
        }
        if self.socket_dir != self.run_dir {
            // A deep data directory: the socket is reached through a short link in /tmp.
            let _ = fs::remove_file(&self.socket_dir);
            std::os::unix::fs::symlink(&self.run_dir, &self.socket_dir).with_context(|| {
                format!(
                    "cannot link {} to {}",
                    self.socket_dir.display(),
                    self.run_dir.display()
                )
            })?;
        }
        Ok(())
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(run_as) = self.run_as {
            std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid)).with_context(
                || format!("cannot give {} to the {SYSTEM_USER} user", path.display()),
            )?;
        }
        Ok(())
    }

    /// The arguments `postgres` runs with: private socket only, no TCP; new WAL segments not
    /// zero-filled. PostgreSQL fills each new 16 MB segment with zeroes and syncs it while every
    /// committing transaction waits: under sustained sales (a segment every 2 s at 1,500 sales/s,
    /// until checkpoints recycle old segments) that stalled all sales for about 50 ms each time,
    /// which was most of the 32-client p99 (docs/PERFORMANCE.md, seventh look). A full disk ends
    /// the same way with or without it: the WAL write fails and PostgreSQL restarts.
    fn server_args(&self) -> Vec<String> {
        let mut args = vec![
            "-D".to_owned(),
            self.pgdata.display().to_string(),
            "-k".to_owned(),
            self.socket_dir.display().to_string(),
            "-c".to_owned(),
            "listen_addresses=".to_owned(),
            "-c".to_owned(),
            "unix_socket_permissions=0700".to_owned(),
            "-c".to_owned(),
            "wal_init_zero=off".to_owned(),
        ];
        if self.options.unsafe_fast {
            for setting in [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ] {
                args.push("-c".to_owned());
                args.push(setting.to_owned());
            }
        }
        args
    }

    /// The process id of the running postmaster, if one is running for this data directory.
    pub fn running_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.pgdata.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Starts the cluster detached from this process (`pg_ctl start`), for CLI commands and `plugpos db start`.
    pub async fn start_detached(&self) -> anyhow::Result<()> {
        self.ensure_initialized().await?;
        let options = self.server_args()[2..]
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = self.command(&self.bin.pg_ctl);
        cmd.args(["start", "-w", "-t", "60", "-D"])
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&self.log_file)
            .arg("-o")
            .arg(options);
        let out = cmd
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.bin.pg_ctl.display()))?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not start: {}; see {}",
                self.log_tail(),
                self.log_file.display()
            );
        }
        Ok(())
    }

    /// Stops the running cluster with a fast shutdown (`pg_ctl stop -m fast`) and waits for it.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let mut cmd = self.command(&self.bin.pg_ctl);
        cmd.args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(&self.pgdata);
        let out = cmd
            .output()
            .await
            .with_context(|| format!("cannot run {}", self.bin.pg_ctl.display()))?;
        if !out.status.success() {
            bail!(
                "PostgreSQL did not stop: {}",
                last_lines(&String::from_utf8_lossy(&out.stderr), 2)
            );
        }
        self.remove_socket_link();
        Ok(())
    }

    /// Removes the short /tmp link of a deep data directory once the cluster is stopped.
    pub fn remove_socket_link(&self) {
        if self.socket_dir != self.run_dir {
            let _ = fs::remove_file(&self.socket_dir);
        }
    }

    /// Starts `postgres` as a child of this process (for the supervisor). The child gets its own
    /// process group, so a Ctrl-C in the terminal reaches plugpos, which then drains requests
    /// before it stops the cluster.
    pub fn spawn_child(&self) -> anyhow::Result<tokio::process::Child> {
        // The directories (and a deep data directory's socket link) may have been removed by a stop.
        self.prepare_dirs()?;
        let log = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.log_file)
            .with_context(|| format!("cannot open {}", self.log_file.display()))?;
        let log_err = log
            .try_clone()
            .context("cannot duplicate the PostgreSQL log handle")?;
        let mut cmd = self.command(&self.bin.postgres);
        cmd.args(self.server_args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .process_group(0)
            .kill_on_drop(false);
        cmd.spawn()
            .with_context(|| format!("cannot run {}", self.bin.postgres.display()))
    }

    /// Waits until the cluster accepts connections, or fails early if `child` exits meanwhile.
    pub async fn wait_until_accepting(
        &self,
        mut child: Option<&mut tokio::process::Child>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(child) = child.as_deref_mut()
                && let Some(status) = child
                    .try_wait()
                    .context("cannot poll the PostgreSQL process")?
            {
                bail!(
                    "PostgreSQL exited during startup ({status}): {}",
                    self.log_tail()
                );
            }
            let attempt = tokio::time::timeout(
                Duration::from_secs(2),
                PgConnection::connect_with(&self.connect_options(SUPERUSER)),
            )
            .await;
            if let Ok(Ok(conn)) = attempt {
                let _ = conn.close().await;
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "PostgreSQL did not accept connections within {}s: {}",
                    timeout.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates the business database and the application role if they do not exist yet.
    pub async fn ensure_database(&self, name: &str) -> anyhow::Result<()> {
        let mut conn = PgConnection::connect_with(&self.connect_options(SUPERUSER))
            .await
            .context("cannot connect to the managed PostgreSQL")?;
        let role_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(APP_ROLE)
                .fetch_one(&mut conn)
                .await?;
        if !role_exists {
            // Trusted over the private socket only, like the superuser; it owns nothing.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE ROLE {APP_ROLE} LOGIN")))
                .execute(&mut conn)
                .await
                .context("cannot create the application role")?;
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let ddl = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
            sqlx::raw_sql(sqlx::AssertSqlSafe(ddl))
                .execute(&mut conn)
                .await
                .with_context(|| format!("cannot create database {name}"))?;
        }
        conn.close().await?;
        Ok(())
    }

    /// The last lines PostgreSQL logged, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_file).unwrap_or_default();
        let tail = last_lines(&text, 3);
        if tail.is_empty() {
            "no output from PostgreSQL".to_owned()
        } else {
            tail
        }
    }

    fn command(&self, program: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.current_dir(&self.work_dir)
            .env("LC_ALL", "C.UTF-8")
            .env_remove("PGDATA");
        if let Some(run_as) = self.run_as {
            cmd.uid(run_as.uid).gid(run_as.gid);
        }
        cmd
    }
}

/// The socket directory: `<data_dir>/run` when its socket path fits the kernel's limit, otherwise a
/// short, stable link under /tmp named after the data directory.
fn socket_dir_for(run_dir: &Path) -> PathBuf {
    let socket = run_dir.join(SOCKET_FILE);
    if socket.as_os_str().len() <= MAX_SOCKET_PATH {
        return run_dir.to_owned();
    }
    let digest = Sha256::digest(run_dir.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("/tmp/plugpos-{}", &hex::encode(digest)[..16]))
}

/// PostgreSQL's user must be able to traverse every parent of the data directory.
fn check_reachable(dir: &Path, run_as: RunAs) -> anyhow::Result<()> {
    for ancestor in dir.ancestors() {
        let Ok(meta) = fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let reachable = mode & 0o001 != 0
            || (meta.uid() == run_as.uid && mode & 0o100 != 0)
            || (meta.gid() == run_as.gid && mode & 0o010 != 0);
        if !reachable && ancestor != dir {
            bail!(
                "the data directory {} is not reachable by the {SYSTEM_USER} user PostgreSQL runs as \
                 ({} is mode {:o}); choose a data directory outside it (e.g. /var/lib/plugpos)",
                dir.display(),
                ancestor.display(),
                mode & 0o777
            );
        }
    }
    Ok(())
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_say_how_to_install_them() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = PgBinaries::find(
            None,
            Some(empty.path().to_str().expect("utf8")),
            empty.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("apt-get install postgresql"), "{err}");
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn finds_the_newest_versioned_bin_dir() {
        let root = tempfile::tempdir().expect("tempdir");
        for version in ["13", "15"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).expect("mkdir");
            for name in ["initdb", "pg_ctl", "postgres"] {
                fs::write(bin.join(name), "#!/bin/sh\n").expect("write");
                fs::set_permissions(bin.join(name), fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
        let found = PgBinaries::find(None, Some(""), root.path()).expect("found");
        assert_eq!(found.initdb, root.path().join("15/bin/initdb"));
    }

    #[test]
    fn deep_data_directories_get_a_short_socket_link() {
        let shallow = Path::new("/var/lib/plugpos/run");
        assert_eq!(socket_dir_for(shallow), shallow);
        let deep = PathBuf::from(format!(
            "/srv/{}/run",
            "very-long-directory-name/".repeat(5)
        ));
        let dir = socket_dir_for(&deep);
        assert!(
            dir.to_string_lossy().starts_with("/tmp/plugpos-"),
            "{}",
            dir.display()
        );
        assert!(dir.join(SOCKET_FILE).as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(dir, socket_dir_for(&deep), "the link name is stable");
    }
}
