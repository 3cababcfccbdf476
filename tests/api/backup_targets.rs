//! Backup targets: each backup copied to a directory (a USB disk) and to an S3-compatible store
//! (moto's server, from PyPI), read back and verified; a copy removed at the target noticed and
//! made again; an unplugged target waited for, reported when a day behind, caught up; and a
//! restore from each target on a fresh data directory with only the exported key.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plugpos::core::backup::jobs::CHECK_TARGETS;
use plugpos::core::config::backup_target::Target;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_PASSWORD, TestApp, run};
use crate::shop::Shop;

/// Takes a backup through the API and runs the jobs that follow; returns its id and the jobs.
async fn backup(app: &TestApp, token: &str) -> (String, Vec<plugpos::core::jobs::Job>) {
    let response = app.post_as("/api/v1/backups", token, &json!({})).await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let jobs = app.run_jobs().await;
    (accepted["backup_id"].as_str().unwrap().to_owned(), jobs)
}

fn kinds(jobs: &[plugpos::core::jobs::Job]) -> Vec<(String, String)> {
    jobs.iter()
        .map(|j| (j.kind.clone(), j.status.clone()))
        .collect()
}

async fn view(app: &TestApp, token: &str, id: &str) -> Value {
    app.get_as(&format!("/api/v1/backups/{id}"), token)
        .await
        .json()
        .await
        .unwrap()
}

/// Queues the targets check (as its schedule would) and runs what is due.
async fn check_targets(app: &TestApp) -> Vec<plugpos::core::jobs::Job> {
    let mut conn = app.pool.acquire().await.unwrap();
    plugpos::core::jobs::enqueue(&mut conn, &CHECK_TARGETS, json!({}), None, app.clock.now())
        .await
        .unwrap();
    app.run_jobs().await
}

async fn target_state(app: &TestApp, token: &str, name: &str) -> Value {
    let page: Value = app
        .get_as("/api/v1/backups/targets", token)
        .await
        .json()
        .await
        .unwrap();
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no target {name}: {page}"))
        .clone()
}

fn directory_target(name: &str, path: &Path) -> Target {
    serde_json::from_value(json!({"name": name, "kind": "directory", "path": path})).unwrap()
}

#[tokio::test]
async fn a_directory_target_holds_verified_copies_and_outages_and_damage_are_noticed() {
    let usb = tempfile::Builder::new()
        .prefix("plugpos-usb-")
        .tempdir_in("/tmp")
        .unwrap();
    let folder = usb.path().join("plugpos");
    std::fs::create_dir(&folder).unwrap();
    let target = directory_target("usb", &folder);
    let shop = Shop::open_with(|c| c.backup.targets = vec![target.clone()]).await;
    let app = &shop.app;
    shop.product("USB-1", "1.00", &shop.standard, false).await;

    let (id, jobs) = backup(app, &shop.admin).await;
    assert_eq!(
        kinds(&jobs),
        [
            ("backup.create".into(), "succeeded".into()),
            ("backup.verify".into(), "succeeded".into()),
            ("backup.copy".into(), "succeeded".into())
        ]
    );
    let copied = view(app, &shop.admin, &id).await;
    assert_eq!(copied["copies"]["usb"]["status"], "verified", "{copied}");
    assert!(copied["copies"]["usb"]["verified_at"].is_string());
    let at_target = folder.join(format!("{id}.pgdump.zst.age"));
    assert_eq!(
        std::fs::read(&at_target).unwrap(),
        std::fs::read(
            app.data_dir
                .path()
                .join("backups")
                .join(format!("{id}.pgdump.zst.age"))
        )
        .unwrap()
    );
    let listed: Value = app
        .get_as("/api/v1/backups/targets/usb/backups", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str());
    assert_eq!(listed["next_cursor"], Value::Null);

    // Someone deletes the copy on the disk: the next check notices and copies it again.
    std::fs::remove_file(&at_target).unwrap();
    let jobs = check_targets(app).await;
    assert_eq!(
        kinds(&jobs),
        [
            ("backup.targets".into(), "succeeded".into()),
            ("backup.copy".into(), "succeeded".into())
        ]
    );
    assert_eq!(jobs[0].result.as_ref().unwrap()["usb"]["lost"], json!([id]));
    assert!(at_target.exists());
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"backup_copy_failed".to_owned())
    );
    assert_eq!(
        view(app, &shop.admin, &id).await["copies"]["usb"]["status"],
        "verified"
    );

    // The disk is unplugged: the backup is still taken, its copy waits.
    let unplugged = usb.path().join("unplugged");
    std::fs::rename(&folder, &unplugged).unwrap();
    let (second, jobs) = backup(app, &shop.admin).await;
    assert_eq!(jobs[0].status, "succeeded");
    assert_eq!(jobs[1].status, "succeeded");
    assert_eq!(jobs[2].kind, "backup.copy");
    assert_eq!(jobs[2].status, "failed", "tried again later: {:?}", jobs[2]);
    assert!(jobs[2].run_at > app.clock.now());
    let waiting = view(app, &shop.admin, &second).await;
    assert_eq!(waiting["status"], "valid");
    assert_eq!(waiting["copies"]["usb"]["status"], "failed");
    assert_eq!(
        waiting["copies"]["usb"]["error"]["code"],
        "backup.target_unreachable"
    );
    check_targets(app).await;
    let state = target_state(app, &shop.admin, "usb").await;
    assert_eq!(state["source"], "config");
    assert_eq!(state["state"]["reachable"], false);
    assert_eq!(state["state"]["behind"], false);

    // Two days later it is still unplugged: the target is behind, and says so once a day.
    app.clock.advance(chrono::Duration::days(2));
    // Sessions do not last two days.
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let events_before = app.security_event_kinds().await.len();
    let jobs = check_targets(app).await;
    assert!(
        jobs.iter()
            .any(|j| j.kind == "backup.copy" && j.status != "succeeded")
    );
    let state = target_state(app, &admin, "usb").await;
    assert_eq!(state["state"]["behind"], true, "{state}");
    let events = app.security_event_kinds().await;
    assert_eq!(
        events[events_before..]
            .iter()
            .filter(|k| *k == "backup_target_behind")
            .count(),
        1
    );
    check_targets(app).await;
    assert_eq!(
        app.security_event_kinds()
            .await
            .iter()
            .filter(|k| *k == "backup_target_behind")
            .count(),
        1,
        "not again the same day"
    );
    // The admin's health details say so too.
    let health: Value = app
        .get_as("/api/v1/health/details", &admin)
        .await
        .json()
        .await
        .unwrap();
    let warning = health["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.starts_with("backup target usb is more than a day behind")
            && warning.contains("is not an existing folder"),
        "{health}"
    );
    // And so does `plugpos doctor`, from the data directory alone.
    let doctor = run({
        let mut c = crate::helpers::plugpos();
        c.args(["doctor", "--data-dir"]).arg(app.data_dir.path());
        c
    })
    .await;
    let out = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        out.contains("WARN backup_targets: backup target usb is more than a day behind")
            && out.contains("OK   backup_key: the backup key is there"),
        "{out}"
    );
    // Warnings (this data directory's server and cluster are not running either): exit 1.
    assert_eq!(doctor.status.code(), Some(1), "{out}");
    assert!(
        String::from_utf8_lossy(&doctor.stderr).contains("warning(s) (above)"),
        "{}",
        String::from_utf8_lossy(&doctor.stderr)
    );
    let public: Value = app.get("/health/ready").await.json().await.unwrap();
    assert!(public.get("warnings").is_none(), "{public}");

    // Plugged in again: the waiting copy is made at its next attempt, and the target catches up.
    std::fs::rename(&unplugged, &folder).unwrap();
    app.clock.advance(chrono::Duration::hours(2));
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    check_targets(app).await;
    let caught_up = view(app, &admin, &second).await;
    assert_eq!(
        caught_up["copies"]["usb"]["status"], "verified",
        "{caught_up}"
    );
    let state = target_state(app, &admin, "usb").await;
    assert_eq!(state["state"]["reachable"], true);
    assert_eq!(state["state"]["behind"], false);
    let health: Value = app
        .get_as("/api/v1/health/details", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["warnings"],
        json!([
            "backup target usb is on the same disk as the data directory: a disk failure loses both"
        ]),
        "caught up, and the test's temp folders share a disk"
    );

    // A new machine: only the exported key and the disk.
    restore_on_a_fresh_machine(app, &target, &second, "USB-1").await;
}

#[tokio::test]
async fn a_copy_damaged_at_the_target_is_found_by_its_weekly_read_back() {
    let nas = tempfile::Builder::new()
        .prefix("plugpos-nas-")
        .tempdir_in("/tmp")
        .unwrap();
    let shop =
        Shop::open_with(|c| c.backup.targets = vec![directory_target("nas", nas.path())]).await;
    let app = &shop.app;
    let (id, _) = backup(app, &shop.admin).await;
    let copy = nas.path().join(format!("{id}.pgdump.zst.age"));
    let original = std::fs::read(&copy).unwrap();
    // A bit flips on the disk: same size, so a listing does not see it.
    let mut damaged = original.clone();
    damaged[original.len() / 2] ^= 0x01;
    std::fs::write(&copy, &damaged).unwrap();
    let jobs = check_targets(app).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].result.as_ref().unwrap()["nas"]["lost"], json!([]));

    // A week on, the check reads the copy back whole, finds it damaged and copies it again.
    app.clock.advance(chrono::Duration::days(8));
    let admin = app.token("admin", ADMIN_PASSWORD).await;
    let jobs = check_targets(app).await;
    assert_eq!(jobs[0].result.as_ref().unwrap()["nas"]["lost"], json!([id]));
    assert_eq!(
        kinds(&jobs)[1..],
        [("backup.copy".to_owned(), "succeeded".to_owned())]
    );
    assert_eq!(std::fs::read(&copy).unwrap(), original);
    assert!(
        app.security_event_kinds()
            .await
            .contains(&"backup_copy_failed".to_owned())
    );
    let view = view(app, &admin, &id).await;
    assert_eq!(view["copies"]["nas"]["status"], "verified");
}

/// An S3 credentials file in `dir` with mode `mode` (moto takes any key; the secret is one the
/// API must never show).
fn credentials_file(dir: &Path, mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let file = dir.join("s3.toml");
    std::fs::write(
        &file,
        "access_key_id = \"testing\"\nsecret_access_key = \"testing-secret\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    file
}

#[test]
fn targets_inside_the_data_directory_and_open_credentials_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let inside = data.path().join("copies");
    std::fs::create_dir(&inside).unwrap();
    let refused =
        plugpos::core::backup::targets::open(&directory_target("x", &inside), data.path())
            .err()
            .unwrap();
    assert_eq!(refused.code, "backup.target_refused");
    assert!(refused.message.contains("inside the data directory"));

    let credentials = credentials_file(data.path(), 0o644);
    let s3: Target = serde_json::from_value(json!({
        "name": "s", "kind": "s3", "endpoint": "http://127.0.0.1:9", "bucket": "bkt",
        "credentials_file": credentials,
    }))
    .unwrap();
    let refused = plugpos::core::backup::targets::open(&s3, data.path())
        .err()
        .unwrap();
    assert_eq!(refused.code, "backup.target_credentials");
    assert!(refused.message.contains("chmod 600"), "{}", refused.message);
}

/// The moto S3 server, from PyPI, in `target/test-venv` (installed there when missing).
fn moto_server() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/test-venv");
    let server = venv.join("bin/moto_server");
    if !server.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let installed = made
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "moto[server]>=5,<6"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        assert!(
            installed,
            "cannot install moto's S3 server from PyPI into {} (needs python3-venv; .ci/run installs it)",
            venv.display()
        );
    }
    server
}

/// A running moto server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

#[tokio::test]
async fn an_s3_target_holds_verified_copies_and_a_fresh_machine_restores_from_it() {
    let moto = Moto::start();
    let client = reqwest::Client::new();
    let bucket = client
        .put(format!("{}/shop-backups", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(bucket.status().is_success(), "{:?}", bucket.text().await);
    let secrets = tempfile::Builder::new()
        .prefix("plugpos-s3-")
        .tempdir_in("/tmp")
        .unwrap();
    let credentials = credentials_file(secrets.path(), 0o600);
    let target: Target = serde_json::from_value(json!({
        "name": "offsite", "kind": "s3", "endpoint": moto.endpoint, "region": "eu-central-1",
        "bucket": "shop-backups", "prefix": "shop-1/backups", "credentials_file": credentials,
        "path_style": true
    }))
    .unwrap();
    let shop = Shop::open_with(|c| c.backup.targets = vec![target.clone()]).await;
    let app = &shop.app;
    shop.product("S3-1", "2.00", &shop.standard, false).await;
    let (id, jobs) = backup(app, &shop.admin).await;
    assert_eq!(
        kinds(&jobs)[2],
        ("backup.copy".to_owned(), "succeeded".to_owned()),
        "{jobs:?}"
    );
    let copied = view(app, &shop.admin, &id).await;
    assert_eq!(
        copied["copies"]["offsite"]["status"], "verified",
        "{copied}"
    );
    // The objects are in the bucket, under the prefix (read with the same credentials).
    let sizes = plugpos::core::backup::targets::open(&target, app.data_dir.path())
        .unwrap()
        .sizes()
        .await
        .unwrap();
    assert_eq!(
        sizes.get(&format!("{id}.pgdump.zst.age")).copied(),
        copied["size_bytes"].as_u64()
    );
    assert!(sizes.contains_key(&format!("{id}.manifest.json")));
    // A file larger than one part (16 MiB) goes up in parts and reads back whole.
    let big = secrets.path().join("big.bin");
    let bytes: Vec<u8> = (0..40u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&big, &bytes).unwrap();
    let opened = plugpos::core::backup::targets::open(&target, app.data_dir.path()).unwrap();
    opened.upload(&big, "big.bin").await.unwrap();
    use sha2::Digest;
    assert_eq!(
        opened.read_back("big.bin").await.unwrap(),
        Some((
            bytes.len() as u64,
            hex::encode(sha2::Sha256::digest(&bytes))
        ))
    );
    let listed: Value = app
        .get_as("/api/v1/backups/targets/offsite/backups", &shop.admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str());
    // The API shows where the credentials are, never what they are.
    let state = target_state(app, &shop.admin, "offsite").await;
    assert_eq!(
        state["definition"]["credentials_file"],
        credentials.display().to_string()
    );
    assert!(!state.to_string().contains("testing-secret"));

    restore_on_a_fresh_machine(app, &target, &id, "S3-1").await;
}

/// On a new data directory: import the exported key, list the target's backups, restore `id`
/// from it, and find `sku` in the restored database.
async fn restore_on_a_fresh_machine(app: &TestApp, target: &Target, id: &str, sku: &str) {
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
    assert!(export.status.success());
    let machine = tempfile::Builder::new()
        .prefix("plugpos-new-")
        .tempdir_in("/tmp")
        .unwrap();
    let config = machine.path().join("plugpos.toml");
    // The target as its admin writes it in the new machine's config file.
    let targets = toml::to_string(&json!({"backup": {"targets": [target]}})).unwrap();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n\n{targets}",
            machine.path().join("data").display()
        ),
    )
    .unwrap();
    let target = target.name.as_str();
    let cli = |args: &[&str]| {
        let mut c = crate::helpers::plugpos();
        c.arg("--config").arg(&config).args(args);
        c
    };
    let imported = run(cli(&["backup", "import-key", key.to_str().unwrap()])).await;
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let listed = run(cli(&["backup", "list", "--from", target])).await;
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(id),
        "{}{}",
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&listed.stderr)
    );
    let restored = run(cli(&["backup", "restore", "--from", target, id, "--yes"])).await;
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert!(
        String::from_utf8_lossy(&restored.stdout).contains(&format!(
            "restored backup {id} (the database held no shop before: nothing to keep)"
        )),
        "{}",
        String::from_utf8_lossy(&restored.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&restored.stderr).contains("ERROR"),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );

    // The restored shop has its products.
    let data_dir = plugpos::core::data_dir::DataDir::prepare(&machine.path().join("data")).unwrap();
    let cluster = plugpos::core::postgres::ManagedCluster::new(
        &data_dir,
        None,
        plugpos::core::postgres::ClusterOptions::default(),
    )
    .unwrap();
    cluster.start_detached().await.unwrap();
    let pool =
        sqlx::PgPool::connect_with(cluster.connect_options(plugpos::core::postgres::DATABASE_NAME))
            .await
            .unwrap();
    let skus: Vec<String> = sqlx::query_scalar("SELECT sku FROM products")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    cluster.stop().await.unwrap();
    assert_eq!(skus, [sku]);
}
