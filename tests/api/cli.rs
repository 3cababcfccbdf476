//! The command line as an installer or admin uses it: config errors, init, migrate.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::helpers::{create_database, database_url, plugpos, pool};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A failed command exits non-zero with exactly one line on stderr.
fn one_line_failure(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected failure; stdout: {}",
        stdout(output)
    );
    let text = stderr(output);
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
    assert!(text.starts_with("plugpos: error: "), "{text}");
    text
}

#[test]
fn unknown_key_bad_value_and_unreadable_file_are_one_line_errors() {
    let output = plugpos()
        .args(["config", "check"])
        .env("PLUGPOS_HTTP__PROT", "8080")
        .output()
        .unwrap();
    let text = one_line_failure(&output);
    assert!(
        text.contains("config key `http.prot` (from PLUGPOS_HTTP__PROT): unknown key"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugpos.toml");
    std::fs::write(&file, "[http]\nport = \"eighty\"\n").unwrap();
    let output = plugpos()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = one_line_failure(&output);
    assert!(text.contains("config key `http.port`"), "{text}");
    assert!(text.contains("plugpos.toml"), "names the file: {text}");

    std::fs::write(&file, "[logs]\nlevel = \"info\"\n").unwrap();
    let text = one_line_failure(
        &plugpos()
            .args(["config", "check", "--config"])
            .arg(&file)
            .output()
            .unwrap(),
    );
    assert!(text.contains("config key `logs`"), "{text}");

    let output = plugpos()
        .args(["config", "check", "--config", "/nonexistent/plugpos.toml"])
        .output()
        .unwrap();
    let text = one_line_failure(&output);
    assert!(
        text.contains("cannot read config file /nonexistent/plugpos.toml"),
        "{text}"
    );
}

#[test]
fn serve_refuses_a_bad_config_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = plugpos()
        .args(["serve", "--data-dir"])
        .arg(&data)
        .env("PLUGPOS_LOG__RETENTION_DAYS", "0")
        .output()
        .unwrap();
    let text = one_line_failure(&output);
    assert!(
        text.contains(
            "config key `log.retention_days` (from PLUGPOS_LOG__RETENTION_DAYS): must be at least 1"
        ),
        "{text}"
    );
    assert!(!data.exists());
}

#[test]
fn output_to_a_closed_pipe_or_a_full_disk() {
    // `plugpos openapi | head -c 1`: the reader leaves at once; no panic, a normal exit.
    let mut child = plugpos()
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        (output.status.success(), stderr(&output)),
        (true, String::new())
    );
    // `plugpos openapi > /dev/full`: a one-line error and a failure status.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let output = plugpos().arg("openapi").stdout(full).output().unwrap();
    let text = one_line_failure(&output);
    assert!(text.contains("No space left on device"), "{text}");
}

#[test]
fn default_config_is_a_valid_commented_file() {
    let output = plugpos().args(["config", "default"]).output().unwrap();
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(
        text.lines().filter(|l| l.starts_with('#')).count() > 10,
        "commented: {text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugpos.toml");
    std::fs::write(&file, &text).unwrap();
    let output = plugpos()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("configuration OK"));
}

#[test]
fn missing_postgres_binaries_say_how_to_install_them() {
    let dir = tempfile::tempdir().unwrap();
    let output = plugpos()
        .args(["db", "status", "--data-dir"])
        .arg(dir.path())
        .env("PLUGPOS_DATABASE__PG_BIN_DIR", "/nonexistent/bin")
        .output()
        .unwrap();
    let text = one_line_failure(&output);
    assert!(text.contains("apt-get install postgresql"), "{text}");
}

#[tokio::test]
async fn init_sets_up_once_from_a_password_file_or_stdin() {
    let database = create_database(true).await;
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("admin-password");
    std::fs::write(&password_file, "correct horse battery\n").unwrap();
    let init = |currency: &str| {
        let mut cmd = plugpos();
        cmd.args([
            "init",
            "--business-name",
            "Corner Shop",
            "--currency",
            currency,
            "--timezone",
            "Europe/Berlin",
        ])
        .args(["--admin-username", "owner", "--data-dir"])
        .arg(dir.path())
        .env("PLUGPOS_DATABASE__URL", database_url(&database));
        cmd
    };

    let output = init("XXX")
        .arg("--admin-password-file")
        .arg(&password_file)
        .output()
        .unwrap();
    let text = one_line_failure(&output);
    assert!(
        text.contains("--currency: not an ISO 4217 currency code"),
        "{text}"
    );

    let output = init("EUR").output().unwrap();
    assert!(!output.status.success(), "a password source is required");

    let output = init("EUR")
        .arg("--admin-password-file")
        .arg(&password_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output)
            .contains("initialized \"Corner Shop\" (EUR, Europe/Berlin); super admin \"owner\"")
    );
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'owner'")
            .fetch_one(&pool(&database))
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$"));

    let mut child = init("EUR")
        .arg("--admin-password-stdin")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"another good passphrase\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = one_line_failure(&output);
    assert!(text.contains("already set up"), "{text}");
}

#[tokio::test]
async fn migrate_status_dry_run_and_apply() {
    let n = crate::migrations::all_versions().len();
    let database = create_database(false).await;
    let dir = tempfile::tempdir().unwrap();
    let migrate = |args: &[&str]| {
        plugpos()
            .arg("migrate")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env("PLUGPOS_DATABASE__URL", database_url(&database))
            .output()
            .unwrap()
    };
    let output = migrate(&["status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("pending"), "{}", stdout(&output));
    assert!(stdout(&output).contains("foundation"));

    let output = migrate(&["--dry-run"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("rolled back"),
        "{}",
        stdout(&output)
    );
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('business') IS NOT NULL")
        .fetch_one(&pool(&database))
        .await
        .unwrap();
    assert!(!exists, "the dry run left the schema unchanged");
    assert!(stdout(&migrate(&["status"])).contains(&format!("0 applied, {n} pending")));

    let output = migrate(&[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains(&format!("applied {n} migration(s)")));
    assert!(stdout(&migrate(&["status"])).contains(&format!("{n} applied, 0 pending")));
}

#[tokio::test]
async fn doctor_prints_every_check_and_exits_by_the_worst() {
    let shop = crate::shop::Shop::open().await;
    let (pen, _) = shop.pen_and_bread().await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&shop.app.pool)
        .await
        .unwrap();
    let doctor = |json: bool| {
        let mut command = plugpos();
        command.arg("doctor");
        if json {
            command.arg("--json");
        }
        command
            .arg("--data-dir")
            .arg(shop.app.data_dir.path())
            .env("PLUGPOS_DATABASE__URL", database_url(&database));
        crate::helpers::run(command)
    };
    let output = doctor(true).await;
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let level = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["level"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no check {name}: {report}"))
    };
    for name in [
        "data_directory",
        "disk_space",
        "postgres",
        "database",
        "migrations",
        "audit_chain",
        "clock",
        "backup_key",
        "backups",
        "server",
        "service",
        "tls",
    ] {
        level(name);
    }
    for name in [
        "data_directory",
        "database",
        "migrations",
        "audit_chain",
        "clock",
        "backup_key",
        "stock_ledger",
    ] {
        assert_eq!(level(name), "ok", "{name}: {report}");
    }
    // No backup yet, and no `plugpos serve` for this data directory: warnings, exit 1.
    assert_eq!(level("backups"), "warn");
    assert_eq!(level("server"), "warn");
    assert_eq!(report["status"], "warn");
    assert_eq!(output.status.code(), Some(1));

    // A key readable by others is a failure: exit 2, the line says what to do.
    let key = shop.app.data_dir.path().join("keys/audit-signing.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let output = doctor(false).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL data_directory: others may read")
                && l.ends_with("chmod 700 the keys directory and 600 its files")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("OK   migrations: the schema is current"))
    );
    assert!(stderr(&output).contains("1 failure(s)"));

    // A level changed behind the ledger's back is found.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    sqlx::query("UPDATE stock_levels SET quantity = quantity + 1 WHERE product_id = $1::uuid")
        .bind(&pen)
        .execute(&shop.app.pool)
        .await
        .unwrap();
    let output = doctor(false).await;
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL stock_ledger: 1 of 1 inconsistent")
                && l.contains(&format!("product {pen}"))
                && l.contains("level 11.000, movements add up to 10.000")),
        "{text}"
    );
}
