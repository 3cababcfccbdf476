//! The support bundle: every part with the database up, the non-database parts with it down,
//! and not one of the instance's secrets in it, wherever they were planted.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{cluster, create_database, plugpos, pool, run};

/// Every file of a bundle, by name.
fn unpack(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(zstd::Decoder::new(bytes).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            (name, content)
        })
        .collect()
}

/// The manifest, after checking that it lists every other file with its size and sha256.
fn checked_manifest(files: &[(String, Vec<u8>)]) -> Value {
    let (_, manifest) = files
        .iter()
        .find(|(n, _)| n == "manifest.json")
        .expect("a manifest");
    let manifest: Value = serde_json::from_slice(manifest).unwrap();
    let listed = manifest["files"].as_array().unwrap();
    assert_eq!(listed.len(), files.len() - 1, "{manifest}");
    for (name, bytes) in files.iter().filter(|(n, _)| n != "manifest.json") {
        let entry = listed
            .iter()
            .find(|f| f["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} unlisted"));
        assert_eq!(entry["size"], bytes.len());
        assert_eq!(entry["sha256"], hex::encode(Sha256::digest(bytes)));
        assert!(entry["source"].as_str().is_some_and(|s| !s.is_empty()));
    }
    manifest
}

fn error_of(manifest: &Value, name: &str) -> Option<String> {
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {manifest}"))["error"]
        .as_str()
        .map(str::to_owned)
}

fn assert_no_canary(files: &[(String, Vec<u8>)], canaries: &[(&str, String)]) {
    for (name, bytes) in files {
        let text = String::from_utf8_lossy(bytes);
        for (what, canary) in canaries {
            assert!(
                !text.contains(canary.as_str()),
                "the {what} is in {name}:\n{text}"
            );
        }
    }
}

/// The server of a test, stopped however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn the_bundle_has_every_part_and_no_secret_with_the_database_up_or_down() {
    let database = create_database(true).await;
    let socket = cluster().cluster.socket_dir().display().to_string();
    // Passwords in the URLs: the test cluster trusts its socket, so they are carried, never checked.
    let db_password = "Canary-db-password-4711";
    let owner_password = "Canary-owner-password-0815";
    let dir = tempfile::Builder::new()
        .prefix("plugpos-support-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let config = dir.path().join("plugpos.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[http]\nport = {port}\n[database]\nurl = \"postgres://postgres:{db_password}@localhost/{database}?host={socket}\"\n",
            data.display()
        ),
    )
    .unwrap();
    let owner_url =
        format!("postgres://postgres:{owner_password}@localhost/{database}?host={socket}");
    let binary = |args: &[&str]| {
        let mut command = plugpos();
        command
            .env("PLUGPOS_CONFIG", &config)
            .env("PLUGPOS_DATABASE__OWNER_URL", &owner_url)
            .args(args);
        command
    };
    let server = KillOnDrop(
        binary(&["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..240 {
        if client
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Setup as the desktop wizard does it, with the token from the file.
    let setup_token = std::fs::read_to_string(data.join("setup-token"))
        .unwrap()
        .trim()
        .to_owned();
    let admin_password = "Canary-owner-phrase-1234";
    let response = client
        .post(format!("{base}/api/v1/setup"))
        .json(&json!({"setup_token": setup_token,
            "business": {"name": "Corner Shop", "currency": "EUR", "timezone": "Europe/Berlin"},
            "admin": {"username": "admin", "password": admin_password}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": admin_password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();
    let enrollment: Value = client
        .post(format!("{base}/api/v1/auth/mfa/enroll"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let totp_secret = enrollment["secret"].as_str().unwrap().to_owned();
    let keys = data.join("keys");
    let jwt_secret = std::fs::read_to_string(keys.join("jwt-signing.key"))
        .unwrap()
        .trim()
        .to_owned();
    let age_identity = plugpos::core::backup::key::export(&keys)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned();

    // The secrets where a careless line could have put them: the log, a job's payload.
    let planted = [
        json!({"level": "INFO", "fields": {"message": "request", "headers": {"authorization": format!("Bearer {token}")}}}).to_string(),
        format!("Authorization: Bearer {token}"),
        json!({"level": "DEBUG", "fields": {"message": "login body", "username": "admin", "password": admin_password}}).to_string(),
        format!("login attempt user=admin password={admin_password}"),
        json!({"fields": {"message": "setup", "setup_token": setup_token}}).to_string(),
        format!("X-Setup-Token: {setup_token}"),
        format!("signing tokens with {jwt_secret}"),
        format!("restoring with {age_identity}"),
        format!("connecting to postgres://postgres:{db_password}@localhost/{database}"),
        format!("owner connection host=/run dbname=pos password={owner_password}"),
        format!("otpauth://totp/Corner%20Shop:admin?secret={totp_secret}&issuer=Corner%20Shop"),
        json!({"fields": {"message": "mfa", "totp_secret": totp_secret}}).to_string(),
        format!(r#"request body "{{\"username\":\"admin\",\"password\":\"{admin_password}\"}}" refused"#),
        "a line that stays: 2 pens sold for 5.00".to_owned(),
    ];
    let log = data.join("logs").join("plugpos.canary.log");
    std::fs::write(&log, planted.join("\n") + "\n").unwrap();
    sqlx::query(
        "INSERT INTO jobs (id, kind, status, payload, attempts, max_attempts, last_error, run_at) \
         VALUES (gen_random_uuid(), 'test.canary', 'dead', $1, 1, 1, $2, now())",
    )
    .bind(json!({"note": age_identity, "password": admin_password, "backup": "nightly"}))
    .bind(format!(
        "cannot reach postgres://postgres:{db_password}@db/x"
    ))
    .execute(&pool(&database))
    .await
    .unwrap();
    // A rolled-back upgrade whose error quoted a connection string.
    std::fs::create_dir_all(data.join("upgrades")).unwrap();
    std::fs::write(
        data.join("upgrades/history.jsonl"),
        json!({"at": "2026-12-01T02:00:00Z", "from_version": "0.1.0", "to_version": "0.2.0",
               "outcome": "rolled_back", "failed_step": "migrate", "package_sha256": "00",
               "error": format!("cannot connect to postgres://postgres:{db_password}@db/pos")})
        .to_string()
            + "\n",
    )
    .unwrap();
    let canaries = [
        ("admin password", admin_password.to_owned()),
        ("JWT secret", jwt_secret.clone()),
        ("age identity", age_identity.clone()),
        ("setup token", setup_token.clone()),
        ("database password", db_password.to_owned()),
        ("owner password", owner_password.to_owned()),
        ("bearer token", token.clone()),
        ("TOTP secret", totp_secret.clone()),
    ];

    // Through the API, the database up.
    let response = client
        .post(format!("{base}/api/v1/support-bundle"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(response.headers()["content-type"], "application/zstd");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("plugpos-support-")
    );
    let files = unpack(&response.bytes().await.unwrap());
    let manifest = checked_manifest(&files);
    for part in [
        "version.txt",
        "config.toml",
        "doctor.json",
        "backups.json",
        "system.json",
        "migrations.json",
        "jobs.json",
        "audit.json",
        "database.json",
        "logs/plugpos.canary.log",
    ] {
        assert_eq!(
            error_of(&manifest, part),
            None,
            "{part} with the database up"
        );
    }
    assert_no_canary(&files, &canaries);
    let text = |name: &str| {
        String::from_utf8_lossy(&files.iter().find(|(n, _)| n == name).unwrap().1).into_owned()
    };
    let scrubbed = text("logs/plugpos.canary.log");
    assert!(
        scrubbed.contains("a line that stays: 2 pens sold for 5.00"),
        "{scrubbed}"
    );
    assert!(scrubbed.matches("[REDACTED]").count() >= 13, "{scrubbed}");
    assert!(
        text("config.toml").contains(&format!("http.port = {port}  # from {}", config.display())),
        "{}",
        text("config.toml")
    );
    assert!(text("version.txt").contains(&format!("plugpos {}", env!("CARGO_PKG_VERSION"))));
    assert!(
        text("version.txt").contains("rolled_back"),
        "{}",
        text("version.txt")
    );
    assert!(
        !text("database.json").contains("\"query\""),
        "no query text: {}",
        text("database.json")
    );
    let audit: Value = serde_json::from_str(&text("audit.json")).unwrap();
    assert_eq!(audit["verification"]["ok"], true, "{audit}");
    let jobs: Value = serde_json::from_str(&text("jobs.json")).unwrap();
    let canary_job = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["kind"] == "test.canary")
        .unwrap();
    assert_eq!(
        canary_job["payload"]["backup"], "nightly",
        "what is not secret stays readable"
    );
    let backups: Value = serde_json::from_str(&text("backups.json")).unwrap();
    assert_eq!(backups["key_present"], true);
    let exported: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_records WHERE action = 'support_bundle.export'",
    )
    .fetch_one(&pool(&database))
    .await
    .unwrap();
    assert_eq!(exported, 1, "the export is audited");

    // From the command line, with the server stopped and the database unreachable.
    let _ = Command::new("kill").arg(server.0.id().to_string()).status();
    let _ = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.0.wait()
    })
    .await;
    let out = dir.path().join("down.tar.zst");
    let mut command = binary(&["support-bundle", "--log-days", "2", "-o"]);
    command.arg(&out).env(
        "PLUGPOS_DATABASE__URL",
        format!("postgres://postgres:{db_password}@127.0.0.1:1/{database}"),
    );
    let output = run(command).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("incomplete: migrations.json: the database is not available"),
        "{}",
        stderr(&output)
    );
    let files = unpack(&std::fs::read(&out).unwrap());
    let manifest = checked_manifest(&files);
    for part in [
        "migrations.json",
        "jobs.json",
        "audit.json",
        "database.json",
    ] {
        assert!(
            error_of(&manifest, part).is_some_and(|e| e.contains("the database is not available")),
            "{part}"
        );
    }
    for part in [
        "version.txt",
        "config.toml",
        "doctor.json",
        "backups.json",
        "system.json",
        "logs/plugpos.canary.log",
    ] {
        assert_eq!(
            error_of(&manifest, part),
            None,
            "{part} with the database down"
        );
    }
    assert_no_canary(&files, &canaries);
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o077,
        0,
        "the bundle is private"
    );
}

#[tokio::test]
async fn only_the_diagnostics_permission_exports_and_bad_days_are_refused() {
    let app = crate::helpers::TestApp::spawn_initialized_with(|_| {}).await;
    let cashier = app
        .user_token("carla", "cashier pass 123", &["cashier"])
        .await;
    let manager = app
        .user_token("boss", "manager pass 123", &["manager"])
        .await;
    for token in [&cashier, &manager] {
        crate::helpers::problem(
            app.post_as("/api/v1/support-bundle", token, &json!({}))
                .await,
            403,
            "rbac.forbidden",
        )
        .await;
    }
    let admin = app.token("admin", crate::helpers::ADMIN_PASSWORD).await;
    let refused = crate::helpers::problem(
        app.post_as("/api/v1/support-bundle?log_days=31", &admin, &json!({}))
            .await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(refused["errors"][0]["field"], "log_days");
    let exported: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_records WHERE action = 'support_bundle.export'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(exported, 0, "a refused export writes nothing");
}
