//! The binary as an admin runs it: zero-configuration start on the managed cluster, supervision
//! (PostgreSQL killed and restarted), clean shutdown, deep data directories, `db` commands.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{create_database, database_url, plugpos, readiness_check};

/// A running `plugpos serve`.
struct Server {
    /// Taken by `terminate`; a server still here on drop (a failed test) is stopped then.
    child: Option<Child>,
    address: String,
    stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `plugpos serve` with `configure` applied and waits for "listening on".
    fn start(configure: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = plugpos();
        cmd.arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut seen = Vec::new();
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("plugpos serve did not start listening: {seen:?}")
                });
            seen.push(line.clone());
            if let Some(address) = line.split("listening on http://").nth(1) {
                return Server {
                    child: Some(child),
                    address: address.trim().to_owned(),
                    stderr: rx,
                };
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn ready(&self) -> (u16, Value) {
        let response = reqwest::get(self.url("/health/ready")).await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// SIGTERM, then the exit code (within 60 s).
    fn terminate(mut self) -> i32 {
        let child = self.child.take().unwrap();
        stop(child)
    }

    fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop(child);
        }
    }
}

fn stop(mut child: Child) -> i32 {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("plugpos did not stop within 60s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line mentions `needle` (e.g. a data directory).
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&needle))
        .collect()
}

fn postmaster_pid(pgdata: &Path) -> i32 {
    let text = std::fs::read_to_string(pgdata.join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

async fn wait_for_ready(server: &Server, want: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = server.ready().await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn zero_config_start_survives_postgres_dying_and_stops_cleanly() {
    let cwd = tempfile::Builder::new()
        .prefix("plugpos-zero-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = cwd.path().join("plugpos-data");
    let port = free_port();
    // No flags and no config file: only the port comes from the environment, so tests can run side by side.
    let server = Server::start(|cmd| {
        cmd.current_dir(cwd.path())
            .env("PLUGPOS_HTTP__PORT", port.to_string());
    });
    assert_eq!(server.address, format!("127.0.0.1:{port}"));
    assert!(
        data.join("pg/PG_VERSION").exists(),
        "initdb ran in ./plugpos-data/pg"
    );
    assert!(
        data.join("run/.s.PGSQL.5432").exists(),
        "the socket is inside the data directory"
    );
    let postgres = processes_mentioning(&data.join("pg"));
    assert!(
        postgres.iter().any(|p| p.contains("listen_addresses=")),
        "no TCP listener: {postgres:?}"
    );
    assert!(
        postgres.iter().any(|p| p.contains("wal_init_zero=off")),
        "new WAL segments are not zero-filled while sales wait: {postgres:?}"
    );
    let token = data.join("setup-token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let body = wait_for_ready(&server, 200).await;
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["data_dir", "postgres", "database", "migrations"]
    );

    // A second server on the same data directory is refused.
    let second = plugpos()
        .args(["serve", "--port", "0"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // Requests are logged with their id, and API routes are gated until setup.
    let response = reqwest::Client::new()
        .get(server.url("/api/v1/version"))
        .header("x-request-id", "lifecycle-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);

    // Kill the postmaster: readiness says why, then recovers by itself with a new PostgreSQL.
    let old_pid = postmaster_pid(&data.join("pg"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Once plugpos has reaped its child, the supervisor has noticed; readiness must say so now.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{old_pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the killed postmaster was never reaped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The supervisor's task may run a moment after the reaping: until then readiness can already
    // fail on the database check while the postgres check still says running. It then says why for
    // at least the one-second restart delay.
    let postgres_check = loop {
        let body = wait_for_ready(&server, 503).await;
        let check = readiness_check(&body, "postgres");
        if check["ok"] == false {
            break check;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never blamed PostgreSQL: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(
        postgres_check["detail"]
            .as_str()
            .unwrap()
            .contains("not running"),
        "{postgres_check}"
    );
    let body = wait_for_ready(&server, 200).await;
    let new_pid = postmaster_pid(&data.join("pg"));
    assert_ne!(new_pid, old_pid);
    assert!(
        !body.to_string().contains(&new_pid.to_string()),
        "readiness names no process id: {body}"
    );
    let response = reqwest::get(server.url("/api/v1/setup/status"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the pool reconnected");

    // SIGTERM: exit 0, no PostgreSQL left behind, pid file gone.
    let lines = server.stderr_lines();
    assert_eq!(server.terminate(), 0, "{lines:?}");
    assert!(
        processes_mentioning(&data.join("pg")).is_empty(),
        "orphans: {:?}",
        processes_mentioning(&data.join("pg"))
    );
    assert!(!data.join("plugpos.pid").exists());

    // JSON log lines in the daily file carry the request id.
    let log_file = std::fs::read_dir(data.join("logs"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("plugpos."))
        .expect("a plugpos log file");
    let log = std::fs::read_to_string(log_file.path()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("lifecycle-req-1"))
        .expect("the request is logged");
    let entry: Value = serde_json::from_str(line).unwrap();
    assert_eq!(entry["span"]["request_id"], "lifecycle-req-1");
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "every line is JSON"
    );
    // Why readiness failed is in the log, not in the public answer.
    assert!(
        log.lines()
            .any(|l| l.contains("not ready") && l.contains("stopped unexpectedly")),
        "the log says why it was not ready"
    );
    assert!(
        !log.contains(&std::fs::read_to_string(&token).unwrap().trim().to_owned()),
        "the token is never logged"
    );

    // A second start reuses the cluster (no initdb: PG_VERSION untouched) and the token.
    let pg_version_time = std::fs::metadata(data.join("pg/PG_VERSION"))
        .unwrap()
        .modified()
        .unwrap();
    let token_before = std::fs::read_to_string(&token).unwrap();
    let server = Server::start(|cmd| {
        cmd.current_dir(cwd.path()).args(["--port", "0"]);
    });
    wait_for_ready(&server, 200).await;
    assert_eq!(
        std::fs::metadata(data.join("pg/PG_VERSION"))
            .unwrap()
            .modified()
            .unwrap(),
        pg_version_time
    );
    assert_eq!(std::fs::read_to_string(&token).unwrap(), token_before);
    assert_eq!(server.terminate(), 0);
    assert!(processes_mentioning(&data.join("pg")).is_empty());
}

#[tokio::test]
async fn deep_data_directory_and_db_commands() {
    let base = tempfile::Builder::new()
        .prefix("plugpos-deep-")
        .tempdir_in("/tmp")
        .unwrap();
    let data = base
        .path()
        .join("a-rather-long-directory-name-for-a-shop/".repeat(3))
        .join("plugpos-data");
    assert!(
        data.join("run/.s.PGSQL.5432").as_os_str().len() > 107,
        "the socket path would be too long"
    );
    let db = |sub: &str| {
        let output = plugpos()
            .args(["db", sub, "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), out)
    };
    assert!(db("status").1.contains("not initialized"));
    let (ok, out) = db("start");
    assert!(ok, "{out}");
    assert!(db("status").1.contains("running"));

    // A command uses the running cluster and leaves it running.
    let output = plugpos()
        .args(["migrate", "status", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&format!(
            "0 applied, {} pending",
            crate::migrations::all_versions().len()
        )),
        "{output:?}"
    );
    assert!(db("status").1.contains("running"));

    // serve takes the cluster over; db stop is refused meanwhile.
    let server = Server::start(|cmd| {
        cmd.args(["--port", "0", "--bind", "127.0.0.1", "--data-dir"])
            .arg(&data);
    });
    wait_for_ready(&server, 200).await;
    let (ok, out) = db("stop");
    assert!(!ok && out.contains("stop the server instead"), "{out}");
    assert_eq!(server.terminate(), 0);
    assert!(db("status").1.contains("stopped"));

    // With nothing running, a command starts the cluster for its own duration only.
    let output = plugpos()
        .args(["migrate", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("nothing to apply"),
        "{output:?}"
    );
    assert!(db("status").1.contains("stopped"));
    assert!(processes_mentioning(&data).is_empty());
}

#[tokio::test]
async fn external_database_url_is_used_instead_of_the_managed_cluster() {
    let database = create_database(true).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(|cmd| {
        cmd.args(["--port", "0", "--data-dir"])
            .arg(dir.path())
            .env("PLUGPOS_DATABASE__URL", database_url(&database));
    });
    let body = wait_for_ready(&server, 200).await;
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["data_dir", "database", "migrations"]);
    assert!(!dir.path().join("pg").exists(), "no managed cluster");
    assert_eq!(server.terminate(), 0);
}
