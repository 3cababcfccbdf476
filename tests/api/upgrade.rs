//! `plugpos upgrade`: signed update packages, the swap with its pre-upgrade backup and checks,
//! the rollback of a failed upgrade, and the version history.
//!
//! A second release cannot be compiled inside the test run, so the "new" binaries are scripts
//! that report a newer version and hand every other command to this build: one passes the
//! checks, one breaks the database in its migration and fails it, as a bad release would.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, database_url, plugpos, pool, run};
use crate::shop::Shop;

/// This build's version, and the version the test releases claim (any newer one).
const CURRENT: &str = env!("CARGO_PKG_VERSION");
const NEWER: &str = "99.0.0";

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Where a test release fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fails {
    Nothing,
    Migration,
    /// Its own post-upgrade checks, after its server started.
    Checks,
}

/// A scratch installation: the binary copied to `bin/plugpos` (the upgrade replaces the binary
/// it runs as), a signing key trusted by the config file.
struct Install {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Install {
    fn new(data_dir: &Path, database: &str, port: u16) -> Install {
        let dir = tempfile::Builder::new()
            .prefix("plugpos-upgrade-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        std::fs::copy(
            env!("CARGO_BIN_EXE_plugpos"),
            dir.path().join("bin/plugpos"),
        )
        .unwrap();
        let output = plugpos()
            .args(["package", "keygen", "-o"])
            .arg(dir.path().join("signing.key"))
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let public_key = stdout(&output).trim().to_owned();
        let config = dir.path().join("plugpos.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[http]\nport = {port}\n[database]\nurl = \"{}\"\n[upgrade]\ntrusted_keys = [\"{public_key}\"]\n",
                data_dir.display(),
                database_url(database)
            ),
        )
        .unwrap();
        Install { dir, config }
    }

    fn binary(&self) -> PathBuf {
        self.dir.path().join("bin/plugpos")
    }

    /// The installed binary, with this installation's config.
    fn command(&self) -> Command {
        let mut command = Command::new(self.binary());
        for (key, _) in std::env::vars() {
            if key.starts_with("PLUGPOS_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command.env("PLUGPOS_CONFIG", &self.config);
        command
    }

    /// A "release" script: `version --json` says `version`; with `break_migration` its migrate
    /// renames the sales table and fails; everything else runs this build.
    fn release(&self, name: &str, version: &str, break_migration: bool) -> PathBuf {
        self.release_failing(
            name,
            version,
            if break_migration {
                Fails::Migration
            } else {
                Fails::Nothing
            },
        )
    }

    fn release_failing(&self, name: &str, version: &str, fails: Fails) -> PathBuf {
        let facts = json!({"version": version, "schema_version": 1, "arch": std::env::consts::ARCH, "build": "test"});
        let breaking = if fails == Fails::Checks {
            "for a in \"$@\"; do if [ \"$a\" = upgrade-check ]; then\n  echo 'error: the core table sales is missing' >&2\n  exit 1\nfi; done\n".to_owned()
        } else if fails == Fails::Migration {
            format!(
                "for a in \"$@\"; do if [ \"$a\" = migrate ]; then\n  psql -q \"{}\" -c 'ALTER TABLE sales RENAME TO sales_lost' >&2\n  echo 'error: migration 99990101000000 failed: column \"x\" does not exist' >&2\n  exit 1\nfi; done\n",
                database_url_of(&self.config)
            )
        } else {
            String::new()
        };
        let script = format!(
            "#!/bin/sh\ncase \"$*\" in *'version --json'*) echo '{facts}'; exit 0;; esac\n{breaking}exec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_plugpos")
        );
        let path = self.dir.path().join(name);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Packages `binary` signed with `key` (this installation's trusted key by default).
    fn package(&self, binary: &Path, key: Option<&Path>) -> PathBuf {
        let out = self
            .dir
            .path()
            .join(format!("out-{}", uuid::Uuid::now_v7().simple()));
        let default_key = self.dir.path().join("signing.key");
        let output = plugpos()
            .args(["package", "build", "--binary"])
            .arg(binary)
            .arg("--key")
            .arg(key.unwrap_or(&default_key))
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        PathBuf::from(stdout(&output).trim())
    }
}

fn database_url_of(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    value["database"]["url"].as_str().unwrap().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Rewrites a package's entries: `edit(name, bytes)` returns the new bytes, or None to drop it.
fn rewrite(package: &Path, edit: impl Fn(&str, Vec<u8>) -> Option<Vec<u8>>) -> PathBuf {
    use std::io::Read;
    let file = std::fs::File::open(package).unwrap();
    let mut archive = tar::Archive::new(zstd::Decoder::new(file).unwrap());
    let out = package.with_file_name(format!("edited-{}.plugpkg", uuid::Uuid::now_v7().simple()));
    let mut builder =
        tar::Builder::new(zstd::Encoder::new(std::fs::File::create(&out).unwrap(), 1).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        if let Some(bytes) = edit(&name, bytes) {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o755);
            builder
                .append_data(&mut header, &name, bytes.as_slice())
                .unwrap();
        }
    }
    builder.into_inner().unwrap().finish().unwrap();
    out
}

#[tokio::test]
async fn packages_are_refused_unless_signed_by_a_trusted_key_whole_and_newer() {
    let data = tempfile::tempdir().unwrap();
    let install = Install::new(data.path(), "postgres", free_port());
    let original = std::fs::read(install.binary()).unwrap();
    let good = install.package(&install.release("newer", NEWER, false), None);

    let other_key = install.dir.path().join("other.key");
    assert!(
        plugpos()
            .args(["package", "keygen", "-o"])
            .arg(&other_key)
            .output()
            .unwrap()
            .status
            .success()
    );
    let mut refusals = vec![
        (
            install.package(&install.release("newer2", NEWER, false), Some(&other_key)),
            "not signed by a trusted key",
        ),
        (
            rewrite(&good, |name, bytes| {
                (name != "manifest.sig").then_some(bytes)
            }),
            "not a signed update package",
        ),
        (
            rewrite(&good, |name, bytes| {
                Some(if name == "manifest.json" {
                    String::from_utf8(bytes)
                        .unwrap()
                        .replace(NEWER, "99.0.1")
                        .into_bytes()
                } else {
                    bytes
                })
            }),
            "its manifest was altered",
        ),
        (
            rewrite(&good, |name, mut bytes| {
                if name == "plugpos" {
                    bytes.extend_from_slice(b"# a line slipped in\n");
                }
                Some(bytes)
            }),
            "does not match its manifest",
        ),
        (
            install.package(&install.release("older", "0.0.9", false), None),
            "downgrades are refused",
        ),
        (
            install.package(
                &install.release("same", env!("CARGO_PKG_VERSION"), false),
                None,
            ),
            "is already installed",
        ),
    ];
    let garbage = install.dir.path().join("garbage.plugpkg");
    std::fs::write(&garbage, b"not a package at all").unwrap();
    refusals.push((garbage, "not a readable update package"));
    for (package, expected) in &refusals {
        let output = run({
            let mut command = install.command();
            command.arg("upgrade").arg(package).arg("--yes");
            command
        })
        .await;
        assert!(!output.status.success(), "{package:?} was accepted");
        let text = stderr(&output);
        assert!(
            text.contains(expected),
            "{package:?}: expected `{expected}` in: {text}"
        );
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    }
    assert_eq!(
        std::fs::read(install.binary()).unwrap(),
        original,
        "a refused package changed the binary"
    );
    assert!(!install.dir.path().join("bin/plugpos.previous").exists());
    let history = run({
        let mut command = install.command();
        command.args(["version", "--history"]);
        command
    })
    .await;
    assert!(
        stdout(&history).contains("no upgrades recorded"),
        "{}",
        stdout(&history)
    );
}

/// A shop with one sale, its old server running from the scratch installation's binary.
struct Running {
    shop: Shop,
    install: Install,
    database: String,
    sale: String,
    port: u16,
    server: std::process::Child,
}

impl Running {
    async fn start() -> Running {
        let shop = Shop::open().await;
        let (pen, _) = shop.pen_and_bread().await;
        shop.open_session("100.00").await;
        let response = shop
            .sell(
                &shop.cashier,
                "before-the-upgrade",
                &shop.cash_sale(&pen, "2", "5.00"),
            )
            .await;
        assert_eq!(response.status(), 201);
        let sale = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let database = shop
            .app
            .pool
            .connect_options()
            .get_database()
            .unwrap()
            .to_owned();
        let port = free_port();
        let install = Install::new(shop.app.data_dir.path(), &database, port);
        let server = install
            .command()
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let running = Running {
            shop,
            install,
            database,
            sale,
            port,
            server,
        };
        running.wait_ready().await;
        running
    }

    async fn wait_ready(&self) {
        for _ in 0..240 {
            if let Ok(response) =
                reqwest::get(format!("http://127.0.0.1:{}/health/ready", self.port)).await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("the server on port {} never became ready", self.port);
    }

    async fn upgrade(&self, package: &Path) -> Output {
        let password = self.install.dir.path().join("admin-password");
        std::fs::write(&password, ADMIN_PASSWORD).unwrap();
        let mut command = self.install.command();
        command
            .arg("upgrade")
            .arg(package)
            .args(["--yes", "--login", "admin", "--password-file"])
            .arg(&password);
        run(command).await
    }

    /// GET /api/v1/version from the server now running, as the admin.
    async fn version(&self) -> Value {
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{}", self.port);
        let login: Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"]
            .as_str()
            .expect("the admin logs in")
            .to_owned();
        client
            .get(format!("{base}/api/v1/version"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn sales(&self) -> Vec<String> {
        let pool = pool(&self.database);
        let ids = sqlx::query_scalar("SELECT id::text FROM sales ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        ids
    }

    /// Stops whichever server runs now (the upgrade started its own) and waits for it to go.
    async fn stop(self) {
        let pid = self.server_pid();
        drop(self);
        if let Some(pid) = pid {
            for _ in 0..200 {
                if !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z "))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    fn server_pid(&self) -> Option<i32> {
        let pid_file = self.shop.app.data_dir.path().join("plugpos.pid");
        std::fs::read_to_string(pid_file).ok()?.trim().parse().ok()
    }
}

/// A failed assertion must not leave servers behind: the one the test started and the one the
/// upgrade started get SIGTERM however the test ends.
impl Drop for Running {
    fn drop(&mut self) {
        if let Some(pid) = self.server_pid() {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[tokio::test]
async fn an_upgrade_backs_up_swaps_checks_and_records_it() {
    let running = Running::start().await;
    let original = std::fs::read(running.install.binary()).unwrap();
    let release = running.install.release("newer", NEWER, false);
    let package = running.install.package(&release, None);

    let output = running.upgrade(&package).await;
    let steps = stderr(&output);
    assert!(output.status.success(), "{steps}");
    assert!(
        stdout(&output).contains(&format!(
            "upgraded plugpos {CURRENT} to {NEWER}; the pre-upgrade backup is "
        )),
        "{}",
        stdout(&output)
    );
    for step in [
        "verify: package of plugpos 99.0.0",
        "stop: plugpos serve stopped",
        "backup: pre-upgrade backup ",
        "swap: ",
        "migrate: nothing to apply",
        "start: the new server is ready",
        "checks: migrations current",
        "core tables present, audit chain verifies",
        "the last before the upgrade, unchanged",
        "checks: login as admin works",
    ] {
        assert!(steps.contains(step), "no `{step}` in:\n{steps}");
    }
    assert_eq!(
        std::fs::read(running.install.binary()).unwrap(),
        std::fs::read(&release).unwrap()
    );
    assert_eq!(
        std::fs::read(running.install.dir.path().join("bin/plugpos.previous")).unwrap(),
        original
    );

    // The new server runs (the upgrade started it as the old one ran) and knows its history.
    running.wait_ready().await;
    let version = running.version().await;
    let history = version["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{version}");
    assert_eq!(history[0]["outcome"], "upgraded");
    assert_eq!(history[0]["from_version"], CURRENT);
    assert_eq!(history[0]["to_version"], NEWER);
    let backup = history[0]["backup_id"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            running
                .shop
                .app
                .data_dir
                .path()
                .join(format!("backups/{backup}.manifest.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["kind"], "pre-upgrade");
    assert_eq!(manifest["status"], "valid");
    assert_eq!(running.sales().await, vec![running.sale.clone()]);

    let listed = run({
        let mut command = running.install.command();
        command.args(["version", "--history"]);
        command
    })
    .await;
    assert!(
        stdout(&listed).contains(&format!("{CURRENT} -> {NEWER}  upgraded")),
        "{}",
        stdout(&listed)
    );
    running.stop().await;
}

#[tokio::test]
async fn a_failed_upgrade_puts_the_old_binary_and_data_back() {
    let running = Running::start().await;
    let original = std::fs::read(running.install.binary()).unwrap();
    let package = running
        .install
        .package(&running.install.release("broken", NEWER, true), None);

    let output = running.upgrade(&package).await;
    let steps = stderr(&output);
    assert!(!output.status.success(), "{steps}");
    for step in [
        "backup: pre-upgrade backup ",
        "migrate: FAILED: `plugpos migrate` failed",
        "migration 99990101000000 failed",
        "rollback: ",
        "is the previous version again",
        "rollback: the previous server is running again",
    ] {
        assert!(steps.contains(step), "no `{step}` in:\n{steps}");
    }
    let last = steps.trim().lines().last().unwrap();
    assert!(
        last.contains(&format!("upgrade to {NEWER} failed at migrate"))
            && last.contains(&format!("rolled back to {CURRENT}")),
        "{last}"
    );

    // The old binary, the old data (the sale made before the upgrade), the old server running.
    assert_eq!(std::fs::read(running.install.binary()).unwrap(), original);
    assert_eq!(running.sales().await, vec![running.sale.clone()]);
    let lost: bool = sqlx::query_scalar("SELECT to_regclass('sales_lost') IS NOT NULL")
        .fetch_one(&pool(&running.database))
        .await
        .unwrap();
    assert!(!lost, "the broken migration's change survived the rollback");
    running.wait_ready().await;
    let version = running.version().await;
    assert_eq!(version["version"], CURRENT);
    let history = version["history"].as_array().unwrap();
    assert_eq!(history[0]["outcome"], "rolled_back", "{version}");
    assert_eq!(history[0]["failed_step"], "migrate");
    assert!(
        history[0]["error"]
            .as_str()
            .unwrap()
            .contains("migration 99990101000000 failed")
    );
    running.stop().await;
}

#[tokio::test]
async fn a_release_failing_its_checks_after_it_started_is_rolled_back() {
    let running = Running::start().await;
    let original = std::fs::read(running.install.binary()).unwrap();
    let package = running.install.package(
        &running
            .install
            .release_failing("unchecked", NEWER, Fails::Checks),
        None,
    );

    let output = running.upgrade(&package).await;
    let steps = stderr(&output);
    assert!(!output.status.success(), "{steps}");
    for step in [
        "migrate: nothing to apply",
        "start: the new server is ready",
        "checks: FAILED",
        "the core table sales is missing",
        "rollback: the new server is stopped",
        "is the previous version again",
        "rollback: the data of backup ",
        "rollback: the previous server is running again",
    ] {
        assert!(steps.contains(step), "no `{step}` in:\n{steps}");
    }
    assert_eq!(std::fs::read(running.install.binary()).unwrap(), original);
    assert_eq!(running.sales().await, vec![running.sale.clone()]);
    running.wait_ready().await;
    let version = running.version().await;
    assert_eq!(version["history"][0]["outcome"], "rolled_back", "{version}");
    assert_eq!(version["history"][0]["failed_step"], "checks");
    running.stop().await;
}
