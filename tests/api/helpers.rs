//! Test helpers: one throwaway PostgreSQL cluster per test run (started with the product's own
//! managed-cluster code), a migrated template database, and one database cloned from it per test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use plugpos::core::auth::tokens::SigningKey;
use plugpos::core::config::Config;
use plugpos::core::data_dir::DataDir;
use plugpos::core::db::{lazy_pool, migrations};
use plugpos::core::modules::{ModuleStates, Registry};
use plugpos::core::postgres::{APP_ROLE, ClusterOptions, ManagedCluster};
use plugpos::core::server::assemble::{Capabilities, assemble};
use plugpos::core::setup::token;
use plugpos::core::state::{AppParts, AppState};
use plugpos::shared::clock::Clock;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection, PgPool};

const TEMPLATE: &str = "plugpos_template";

/// The shared test cluster.
pub struct TestCluster {
    pub cluster: ManagedCluster,
}

/// The cluster, started on first use. A watchdog process stops it and deletes its directory
/// once this test process has exited, however it exits.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        // Started on a runtime of its own: tests each run on their own runtime, which may end first.
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(start_cluster())
        })
        .join()
        .expect("the test cluster failed to start")
    })
}

async fn start_cluster() -> TestCluster {
    let root = PathBuf::from(format!(
        "/tmp/plugpos-test-{}-{}",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    ));
    let data_dir = DataDir::prepare(&root).unwrap();
    let cluster =
        ManagedCluster::new(&data_dir, None, ClusterOptions { unsafe_fast: true }).unwrap();
    cluster.start_detached().await.unwrap();
    spawn_watchdog(&cluster, &root);
    // The product's own bootstrap: the template database and the application role.
    cluster.ensure_database(TEMPLATE).await.unwrap();
    let pool = lazy_pool(cluster.connect_options(TEMPLATE), 1);
    migrations::apply(&pool).await.unwrap();
    pool.close().await;
    TestCluster { cluster }
}

/// Immediate shutdown (SIGQUIT to the postmaster) and cleanup after the test process is gone.
fn spawn_watchdog(cluster: &ManagedCluster, root: &Path) {
    let script = format!(
        "while [ -d /proc/{parent} ]; do sleep 1; done; \
         kill -QUIT $(head -1 '{pgdata}/postmaster.pid') 2>/dev/null; sleep 2; rm -rf '{root}'",
        parent = std::process::id(),
        pgdata = cluster.pgdata().display(),
        root = root.display(),
    );
    use std::os::unix::process::CommandExt;
    // Never waited for on purpose: its job starts when this process is gone.
    #[allow(clippy::zombie_processes)]
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("watchdog");
}

/// A new database cloned from the migrated template (`migrated = false`: an empty one).
pub async fn create_database(migrated: bool) -> String {
    let cluster = cluster();
    let name = format!("test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = PgConnection::connect_with(&cluster.cluster.connect_options("postgres"))
        .await
        .unwrap();
    let ddl = if migrated {
        format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    } else {
        format!("CREATE DATABASE {name}")
    };
    // Concurrent clones of one template can collide briefly; retry.
    for attempt in 0.. {
        match sqlx::raw_sql(sqlx::AssertSqlSafe(ddl.clone()))
            .execute(&mut conn)
            .await
        {
            Ok(_) => break,
            Err(e) if attempt < 20 => {
                eprintln!("retrying CREATE DATABASE: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("cannot create {name}: {e}"),
        }
    }
    conn.close().await.unwrap();
    name
}

/// A pool on `database` of the test cluster.
pub fn pool(database: &str) -> PgPool {
    lazy_pool(cluster().cluster.connect_options(database), 5)
}

/// `postgres://` URL of `database` in the test cluster (for `database.url` and the binary).
pub fn database_url(database: &str) -> String {
    format!(
        "postgres://postgres@localhost/{database}?host={}",
        cluster().cluster.socket_dir().display()
    )
}

/// The password of the admin that `initialize` creates.
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// One server on its own database, served in-process on a free port.
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub data_dir: tempfile::TempDir,
    /// The app's clock: tests move it instead of sleeping.
    pub clock: Clock,
    /// The secret the app signs access tokens with (to forge near-miss tokens).
    pub signing_secret: [u8; 32],
    /// The application itself (to run its jobs, read its backups).
    pub state: AppState,
}

impl TestApp {
    /// An uninitialized instance (a setup token is on disk).
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Like [`spawn`](Self::spawn), with configuration changes.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let database = create_database(true).await;
        let app_pool = lazy_pool(cluster().cluster.connect_options_as(&database, APP_ROLE), 5);
        Self::serve(app_pool, pool(&database), configure).await
    }

    /// Serves an app working on `app_pool` (e.g. one whose database is unreachable); the test
    /// inspects (and tampers) through `pool`, as the database superuser.
    pub async fn serve(
        app_pool: PgPool,
        pool: PgPool,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        let data_dir = tempfile::Builder::new()
            .prefix("plugpos-app-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut config = Config {
            data_dir: data_dir.path().to_owned(),
            ..Config::default()
        };
        // Every test client comes from 127.0.0.1, a whole shop's tills at once: the per-address
        // limit on logins is lifted unless a test sets it.
        config.auth.public_requests_burst = 100_000;
        config.auth.public_requests_per_minute = 100_000;
        configure(&mut config);
        let clock = Clock::manual(chrono::Utc::now());
        let signing_secret: [u8; 32] = rand::random();
        let prepared = DataDir::prepare(data_dir.path()).unwrap();
        token::ensure(&prepared).unwrap();
        let registry = Arc::new(Registry::new(plugpos::plugs::modules()).unwrap());
        let module_states = registry.sync(&app_pool).await.unwrap_or_default();
        tokio::spawn(plugpos::core::audit::chain::run(
            app_pool.clone(),
            std::time::Duration::from_secs(2),
        ));
        let backup_url = database_url(pool.connect_options().get_database().unwrap_or("postgres"));
        let shared = AppParts::new(config, prepared, app_pool, None, false, clock.clone());
        let state = assemble(
            shared,
            Capabilities {
                signing_key: SigningKey::from_bytes(&signing_secret),
                registry,
                modules: ModuleStates::new(module_states),
                backup_target: plugpos::core::backup::DbTarget::new(backup_url.clone()),
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let service =
            plugpos::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await });
        TestApp {
            address,
            client: reqwest::Client::new(),
            pool,
            data_dir,
            clock,
            signing_secret,
            state,
        }
    }

    /// Runs due jobs (core's handlers) one after another until none is due; returns them as
    /// they finished. Tests drive the queue this way instead of waiting for a background runner.
    pub async fn run_jobs(&self) -> Vec<plugpos::core::jobs::Job> {
        let runner = plugpos::core::jobs::runner::Runner::new(
            self.state.clone(),
            plugpos::core::server::assemble::job_handlers(self.state.registry()),
        );
        let mut done = Vec::new();
        while let Some(job) = runner.work_one().await.unwrap() {
            done.push(job);
        }
        done
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub fn token_path(&self) -> PathBuf {
        self.data_dir.path().join("setup-token")
    }

    pub fn setup_token(&self) -> String {
        std::fs::read_to_string(self.token_path())
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A valid setup request with this instance's token.
    pub fn setup_body(&self) -> Value {
        json!({
            "setup_token": self.setup_token(),
            "business": {"name": "Corner Shop", "currency": "EUR", "timezone": "Europe/Berlin"},
            "admin": {"username": "admin", "password": "correct horse battery"}
        })
    }

    /// An instance that is set up, with the admin `admin` / `correct horse battery`.
    pub async fn spawn_initialized_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let app = Self::spawn_with(configure).await;
        app.initialize().await;
        app
    }

    /// Logs in; returns the raw response.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({"username": username, "password": password}),
        )
        .await
    }

    /// Logs in and returns the token response; panics unless it succeeds.
    pub async fn login_ok(&self, username: &str, password: &str) -> Value {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), 200, "login as {username}");
        response.json().await.unwrap()
    }

    /// Logs in and returns the access token; panics unless it succeeds.
    pub async fn token(&self, username: &str, password: &str) -> String {
        self.login_ok(username, password).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Adds a user with `roles` (no forced password change) and returns their access token.
    pub async fn user_token(&self, username: &str, password: &str, roles: &[&str]) -> String {
        self.add_user(username, password, roles, false).await;
        self.token(username, password).await
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// POST JSON with a bearer token.
    pub async fn post_as(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// PATCH JSON with a bearer token.
    pub async fn patch_as(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Runs `change` (SQL behind the server's back, as the superuser) and waits until the server
    /// has heard of it: its cached rows are forgotten when PostgreSQL's notification arrives
    /// (`core::db::changes`), which an API client making the change would not wait for.
    pub async fn behind_its_back<F: std::future::Future<Output = ()>>(&self, change: F) {
        let changes = self.state.changes().clone();
        // Not `generation()`: a restore in another test of this process moves that too.
        let before = changes.forgotten_here();
        change.await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while changes.is_listening() && changes.forgotten_here() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not hear of a change within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Adds a user directly in the database (until the users API exists) with the given roles.
    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        roles: &[&str],
        change_required: bool,
    ) -> uuid::Uuid {
        let hash = plugpos::core::auth::password::hash(secrecy::SecretString::from(password))
            .await
            .unwrap();
        let id = uuid::Uuid::now_v7();
        sqlx::query("INSERT INTO users (id, username, password_hash, password_change_required) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(username)
            .bind(hash)
            .bind(change_required)
            .execute(&self.pool)
            .await
            .unwrap();
        for role in roles {
            sqlx::query("INSERT INTO user_roles (user_id, role_id) SELECT $1, id FROM roles WHERE name = $2")
                .bind(id)
                .bind(role)
                .execute(&self.pool)
                .await
                .unwrap();
        }
        id
    }

    /// The kinds of security events recorded so far, oldest first.
    pub async fn security_event_kinds(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT kind FROM security_events ORDER BY occurred_at, id")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    /// Runs setup; panics unless it succeeds.
    pub async fn initialize(&self) {
        let response = self.post_json("/api/v1/setup", &self.setup_body()).await;
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
}

/// The check called `name` in a `/health/ready` body.
pub fn readiness_check(body: &Value, name: &str) -> Value {
    body["checks"]
        .as_array()
        .expect("readiness has checks")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {body}"))
        .clone()
}

/// Reads a problem document, checking the media type and the fields every problem has.
pub async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    if response.status().as_u16() != status {
        panic!(
            "expected {status} {code}, got {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let header_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("urn:plugpos:problem:{code}"));
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["request_id"],
        header_id.as_str(),
        "the body carries the request id of the header"
    );
    body
}

/// Runs `command` to completion off the test's runtime: a test runtime blocked in `output()`
/// would stall the app's background tasks (the audit chainer holds a lock while it works, and a
/// CLI waiting for that lock would wait forever).
pub async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The `plugpos` binary, with no `PLUGPOS_*` variables inherited.
pub fn plugpos() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plugpos"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PLUGPOS_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}
