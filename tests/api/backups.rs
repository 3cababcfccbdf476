//! Backups and restore, through the API and its jobs, and with the standard tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, create_database, database_url, pool, problem, run};
use crate::shop::Shop;

/// Takes a backup through the API and runs its jobs (create, then verify); returns its id.
async fn backup(app: &TestApp, token: &str) -> String {
    let response = app.post_as("/api/v1/backups", token, &json!({})).await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let jobs = app.run_jobs().await;
    let kinds: Vec<(&str, &str)> = jobs
        .iter()
        .map(|j| (j.kind.as_str(), j.status.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("backup.create", "succeeded"),
            ("backup.verify", "succeeded")
        ],
        "{jobs:?}"
    );
    assert_eq!(jobs[0].id.to_string(), accepted["job_id"].as_str().unwrap());
    accepted["backup_id"].as_str().unwrap().to_owned()
}

/// Asks for the restore of backup `id`, confirming with `confirm`.
async fn restore(app: &TestApp, token: &str, id: &str, confirm: &str) -> reqwest::Response {
    app.post_as(
        &format!("/api/v1/backups/{id}/restore"),
        token,
        &json!({"confirm": confirm}),
    )
    .await
}

async fn backup_view(app: &TestApp, token: &str, id: &str) -> Value {
    let response = app.get_as(&format!("/api/v1/backups/{id}"), token).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn backup_file(app: &TestApp, id: &str) -> PathBuf {
    app.data_dir
        .path()
        .join("backups")
        .join(format!("{id}.pgdump.zst.age"))
}

fn manifest_file(app: &TestApp, id: &str) -> PathBuf {
    app.data_dir
        .path()
        .join("backups")
        .join(format!("{id}.manifest.json"))
}

async fn product_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

/// Verifies backup `id` again through the API and returns the job's outcome and the backup.
async fn reverify(app: &TestApp, token: &str, id: &str) -> (plugpos::core::jobs::Job, Value) {
    let response = app
        .post_as(&format!("/api/v1/backups/{id}/verify"), token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let jobs = app.run_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    (jobs[0].clone(), backup_view(app, token, id).await)
}

#[tokio::test]
async fn backup_then_changes_then_restore_brings_the_data_back_and_the_chain_verifies() {
    let shop = Shop::open().await;
    let app = &shop.app;
    shop.product("KEEP-1", "2.50", &shop.standard, false).await;
    let id = backup(app, &shop.admin).await;
    let listed: Value = app
        .get_as("/api/v1/backups", &shop.admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "valid");
    assert_eq!(listed[0]["kind"], "full");
    assert!(listed[0]["verified_at"].is_string());
    assert!(listed[0]["size_bytes"].as_u64().unwrap() > 1000);
    assert_eq!(listed[0]["sha256"].as_str().unwrap().len(), 64);

    // Changes after the backup.
    shop.product("GONE-1", "9.99", &shop.standard, false).await;
    shop.product("GONE-2", "9.99", &shop.standard, false).await;
    assert_eq!(product_count(app).await, 3);

    // A wrong confirmation and a non-super-admin are refused before anything happens.
    let wrong = restore(app, &shop.admin, &id, "corner shop").await;
    problem(wrong, 422, "restore.confirmation_mismatch").await;
    let manager = restore(app, &shop.manager, &id, "Corner Shop").await;
    problem(manager, 403, "rbac.forbidden").await;

    let response = restore(app, &shop.admin, &id, "Corner Shop").await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let jobs = app.run_jobs().await;
    let restore = jobs.iter().find(|j| j.kind == "backup.restore").unwrap();
    assert_eq!(restore.status, "succeeded", "{restore:?}");
    assert_eq!(restore.id.to_string(), accepted["job_id"].as_str().unwrap());
    // The pre-restore backup was verified too.
    let pre = restore.result.as_ref().unwrap()["pre_restore_backup_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        jobs.iter()
            .any(|j| j.kind == "backup.verify" && j.status == "succeeded"),
        "{jobs:?}"
    );
    assert_eq!(
        backup_view(app, &shop.admin, &pre).await["kind"],
        "pre-restore"
    );
    assert_eq!(backup_view(app, &shop.admin, &pre).await["status"], "valid");

    // The data is back, the API serves again (a new login: sessions are those of the backup).
    assert_eq!(product_count(app).await, 1);
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let products: Value = app
        .get_as("/api/v1/products?search=KEEP", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(products["items"][0]["sku"], "KEEP-1", "{products}");
    // The restore is in the restored chain, and the chain verifies.
    let report: Value = app
        .get_as("/api/v1/audit/verify", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let (action, after): (String, String) = sqlx::query_as(
        "SELECT action, after_json FROM audit_records WHERE action = 'backup.restore' ORDER BY at DESC LIMIT 1",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(action, "backup.restore");
    assert!(after.contains(&id), "{after}");
    // The restore job's row followed it into the restored database.
    let job: Value = app
        .get_as(&format!("/api/v1/jobs/{}", restore.id), &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    // No scratch or previous database is left behind.
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE $1 || '\\_%'")
            .bind(&database)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0);
    let kinds = app.security_event_kinds().await;
    assert!(kinds.contains(&"restore_completed".to_owned()), "{kinds:?}");
}

#[tokio::test]
async fn the_standard_tools_alone_restore_a_backup() {
    let shop = Shop::open().await;
    let app = &shop.app;
    shop.product("STD-1", "1.00", &shop.standard, false).await;
    let id = backup(app, &shop.admin).await;

    let key = app.data_dir.path().join("exported-key.txt");
    let export = run({
        let mut c = crate::helpers::plugpos();
        c.args(["backup", "export-key", "-o"])
            .arg(&key)
            .arg("--data-dir")
            .arg(app.data_dir.path());
        c
    })
    .await;
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let target = create_database(false).await;
    let script = format!(
        "set -o pipefail; age -d -i '{key}' '{file}' | zstd -d | pg_restore --no-owner --exit-on-error -d '{url}'",
        key = key.display(),
        file = backup_file(app, &id).display(),
        url = database_url(&target),
    );
    let restored = run({
        let mut c = Command::new("bash");
        c.args(["-c", &script]);
        c
    })
    .await;
    assert!(
        restored.status.success(),
        "age + zstd + pg_restore failed (is the age CLI installed? apt install age): {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let other = pool(&target);
    let skus: Vec<String> = sqlx::query_scalar("SELECT sku FROM products ORDER BY sku")
        .fetch_all(&other)
        .await
        .unwrap();
    assert_eq!(skus, ["STD-1"]);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(manifest_file(app, &id)).unwrap()).unwrap();
    for (table, count) in manifest["row_counts"].as_object().unwrap() {
        let actual: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{table}\""
        )))
        .fetch_one(&other)
        .await
        .unwrap();
        assert_eq!(Some(actual), count.as_i64(), "{table}");
    }
}

fn flip_byte(path: &Path, at: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = usize::try_from(at).unwrap().min(bytes.len() - 1);
    bytes[at] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn damaged_and_mismatched_backups_are_refused_with_specific_errors() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;

    // A flipped byte in the middle.
    let id = backup(&app, &admin).await;
    let file = backup_file(&app, &id);
    let size = std::fs::metadata(&file).unwrap().len();
    flip_byte(&file, size / 2);
    let (job, view) = reverify(&app, &admin, &id).await;
    assert_eq!(view["status"], "invalid", "{view}");
    assert_eq!(view["error"]["code"], "backup.checksum_mismatch", "{view}");
    assert!(job.last_error.unwrap().contains("backup.checksum_mismatch"));

    // Truncated.
    let id = backup(&app, &admin).await;
    let file = backup_file(&app, &id);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();
    let (_, view) = reverify(&app, &admin, &id).await;
    assert_eq!(view["error"]["code"], "backup.truncated", "{view}");

    // A manifest that does not match the dump (the checksum does: the file is intact).
    let id = backup(&app, &admin).await;
    let path = manifest_file(&app, &id);
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["row_counts"]["users"] = json!(99);
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (_, view) = reverify(&app, &admin, &id).await;
    assert_eq!(view["error"]["code"], "backup.row_count_mismatch", "{view}");
    assert!(
        view["error"]["message"].as_str().unwrap().contains("users"),
        "{view}"
    );

    // A damaged byte whose checksum was "fixed" too: age's authentication catches it.
    let id = backup(&app, &admin).await;
    let file = backup_file(&app, &id);
    let size = std::fs::metadata(&file).unwrap().len();
    flip_byte(&file, size - 100);
    let path = manifest_file(&app, &id);
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    use sha2::Digest;
    manifest["sha256"] = json!(hex::encode(sha2::Sha256::digest(
        std::fs::read(&file).unwrap()
    )));
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (_, view) = reverify(&app, &admin, &id).await;
    assert_eq!(view["error"]["code"], "backup.decrypt_failed", "{view}");

    // Another instance's key.
    let id = backup(&app, &admin).await;
    let keys = app.data_dir.path().join("keys");
    std::fs::remove_file(keys.join("backup-identity.txt")).unwrap();
    plugpos::core::backup::key::ensure(&keys, chrono::Utc::now()).unwrap();
    let (_, view) = reverify(&app, &admin, &id).await;
    assert_eq!(view["error"]["code"], "backup.wrong_key", "{view}");

    // None of them can be restored; every failure is a security event.
    let refused = restore(&app, &admin, &id, "Corner Shop").await;
    problem(refused, 409, "backup.not_restorable").await;
    let kinds = app.security_event_kinds().await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "backup_invalid").count(),
        5,
        "{kinds:?}"
    );
    let listed: Value = app
        .get_as("/api/v1/backups", &admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["status"] == "invalid"),
        "{listed}"
    );
}

#[tokio::test]
async fn a_failing_pg_dump_fails_the_job_and_leaves_earlier_backups_valid() {
    // pg_dump that writes half a dump and fails, next to the real pg_restore.
    let bin = tempfile::tempdir().unwrap();
    // The directory of the server programs (Debian's /usr/bin/pg_restore is only a wrapper).
    let real_restore = which("initdb").parent().unwrap().join("pg_restore");
    std::os::unix::fs::symlink(
        real_restore.parent().unwrap().join("postgres"),
        bin.path().join("postgres"),
    )
    .unwrap();
    std::os::unix::fs::symlink(&real_restore, bin.path().join("pg_restore")).unwrap();
    for tool in ["initdb", "pg_ctl"] {
        std::os::unix::fs::symlink(
            real_restore.parent().unwrap().join(tool),
            bin.path().join(tool),
        )
        .unwrap();
    }
    let fake = bin.path().join("pg_dump");
    let real_dump = real_restore.parent().unwrap().join("pg_dump");
    let flag = bin.path().join("fail");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ -f '{}' ]; then head -c 100000 /dev/urandom; echo 'pg_dump: error: connection lost' >&2; exit 1; fi\nexec '{}' \"$@\"\n",
            flag.display(),
            real_dump.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let dir = bin.path().to_owned();
    let app = TestApp::spawn_initialized_with(move |c| c.database.pg_bin_dir = Some(dir)).await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let good = backup(&app, &admin).await;
    std::fs::write(&flag, b"1").unwrap();
    let response = app.post_as("/api/v1/backups", &admin, &json!({})).await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let jobs = app.run_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, "failed", "will retry: {jobs:?}");
    let error = jobs[0].last_error.clone().unwrap();
    assert!(
        error.contains("backup.dump_failed") && error.contains("connection lost"),
        "{error}"
    );

    let failed = backup_view(&app, &admin, accepted["backup_id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "backup.dump_failed");
    assert_eq!(backup_view(&app, &admin, &good).await["status"], "valid");
    let files: Vec<String> = std::fs::read_dir(app.data_dir.path().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!files.iter().any(|f| f.ends_with(".partial")), "{files:?}");
    assert!(!files.contains(&format!(
        "{}.pgdump.zst.age",
        accepted["backup_id"].as_str().unwrap()
    )));
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"backup_failed".to_owned())
    );

    // The retry, once pg_dump works again, takes the same backup.
    std::fs::remove_file(&flag).unwrap();
    app.clock.advance(chrono::Duration::seconds(31));
    let jobs = app.run_jobs().await;
    assert_eq!(jobs[0].status, "succeeded", "{jobs:?}");
    assert_eq!(jobs[0].attempts, 2);
    assert_eq!(
        backup_view(&app, &admin, accepted["backup_id"].as_str().unwrap()).await["status"],
        "valid"
    );
}

fn which(tool: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    std::fs::canonicalize(path).unwrap()
}

#[tokio::test]
async fn an_interrupted_backup_is_never_valid_and_is_cleaned_up() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let id = backup(&app, &admin).await;
    let dir = app.data_dir.path().join("backups");
    // What a backup killed mid-write leaves: a partial file and no manifest.
    let partial = dir.join(format!("{}.partial", uuid::Uuid::now_v7()));
    std::fs::write(&partial, b"age-encryption.org/v1 half").unwrap();
    let listed: Value = app
        .get_as("/api/v1/backups", &admin)
        .await
        .json::<Value>()
        .await
        .unwrap()["items"]
        .clone();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // The next start (or the retention job) removes it.
    let cleaned = plugpos::core::backup::restore::recover(&app.state.backups())
        .await
        .unwrap();
    assert!(cleaned.iter().any(|c| c.contains("partial")), "{cleaned:?}");
    assert!(!partial.exists());
    assert_eq!(backup_view(&app, &admin, &id).await["status"], "valid");
}

#[tokio::test]
async fn a_failing_restore_leaves_the_original_database_serving() {
    let shop = Shop::open().await;
    let app = &shop.app;
    let id = backup(app, &shop.admin).await;
    shop.product("AFTER-1", "1.00", &shop.standard, false).await;
    // Damaged after it was verified: the restore's own verification must catch it.
    let file = backup_file(app, &id);
    let size = std::fs::metadata(&file).unwrap().len();
    flip_byte(&file, size / 2);
    let response = restore(app, &shop.admin, &id, "Corner Shop").await;
    assert_eq!(response.status(), 202);
    let jobs = app.run_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].status, "dead", "a restore is not retried by itself");
    assert!(
        jobs[0]
            .last_error
            .as_ref()
            .unwrap()
            .contains("backup.checksum_mismatch"),
        "{jobs:?}"
    );
    // Same database, same data, same sessions, no maintenance mode.
    assert_eq!(product_count(app).await, 1);
    let products = app
        .get_as("/api/v1/products?search=AFTER", &shop.manager)
        .await;
    assert_eq!(products.status(), 200);
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"restore_failed".to_owned())
    );
    assert_eq!(
        backup_view(app, &shop.admin, &id).await["status"],
        "invalid"
    );
}

#[tokio::test]
async fn maintenance_mode_answers_503_except_for_following_jobs() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    {
        let _guard = app
            .state
            .maintenance()
            .enter("restoring backup x".to_owned());
        let body = problem(
            app.get_as("/api/v1/users", &admin).await,
            503,
            "maintenance",
        )
        .await;
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("restoring backup x")
        );
        assert_eq!(app.get_as("/api/v1/jobs", &admin).await.status(), 200);
        assert_eq!(app.get("/health/live").await.status(), 200);
    }
    assert_eq!(app.get_as("/api/v1/users", &admin).await.status(), 200);
}

#[tokio::test]
async fn backup_cli_creates_lists_and_verifies() {
    let app = TestApp::spawn_initialized_with(|_| {}).await;
    let database = database_url(app.pool.connect_options().get_database().unwrap());
    let cli = |args: &[&str]| {
        let mut c = crate::helpers::plugpos();
        c.args(args)
            .arg("--data-dir")
            .arg(app.data_dir.path())
            .env("PLUGPOS_DATABASE__URL", &database);
        c
    };
    let created = run(cli(&["backup", "create"])).await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let out = String::from_utf8(created.stdout).unwrap();
    assert!(out.contains("is valid"), "{out}");
    let listed = run(cli(&["backup", "list"])).await;
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(text.contains("full") && text.contains("valid"), "{text}");
    let unknown = run(cli(&[
        "backup",
        "verify",
        "0190b9c4-0000-7000-8000-000000000000",
    ]))
    .await;
    assert!(!unknown.status.success());
    let err = String::from_utf8(unknown.stderr).unwrap();
    assert!(err.contains("there is no backup"), "{err}");
    let key = run(cli(&["backup", "export-key"])).await;
    assert!(
        String::from_utf8(key.stdout)
            .unwrap()
            .contains("AGE-SECRET-KEY-1")
    );
}
