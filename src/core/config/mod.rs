//! Configuration: defaults, then a TOML file, then `PLUGPOS_*` environment overrides, then the
//! command line. Validated once at startup; every error is one line that names the key.

pub mod backup_target;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The commented example printed by `plugpos config default`. A test checks that it parses to
/// exactly the defaults, so the two cannot drift apart.
pub const EXAMPLE: &str = include_str!("plugpos.example.toml");

/// Environment variable that names the config file (read by the CLI, not a config key).
pub const CONFIG_FILE_ENV: &str = "PLUGPOS_CONFIG";
const ENV_PREFIX: &str = "PLUGPOS_";

/// The whole configuration of one instance.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the managed cluster, backups, logs, keys and the setup token live.
    pub data_dir: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub websocket: WebSocketConfig,
    pub jobs: JobsConfig,
    pub schedules: SchedulesConfig,
    pub backup: BackupConfig,
    pub upgrade: UpgradeConfig,
    /// Where each key set outside the defaults came from (`from /etc/plugpos/plugpos.toml`,
    /// `from PLUGPOS_HTTP__PORT`, `from the command line`), for the settings an admin reads.
    #[serde(skip)]
    pub sources: BTreeMap<String, String>,
}

/// Backups.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups are copied off this machine (`[[backup.targets]]`, see docs/operations.md);
    /// more can be added in the `backup.targets` setting.
    pub targets: Vec<backup_target::Target>,
}

/// `plugpos upgrade`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeConfig {
    /// Public keys (hex ed25519) whose update packages are trusted besides the release key:
    /// for packages you build and sign yourself (`packaging/build-plugpkg.sh`).
    pub trusted_keys: Vec<String>,
}

/// The job runner.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Jobs run at once.
    pub workers: usize,
    /// Seconds between looks at the queue when no enqueue woke the runner (retries fall due this way).
    pub poll_secs: u64,
    /// Seconds between heartbeats of a running job.
    pub heartbeat_secs: u64,
    /// A running job without a heartbeat for this long is rescued (its worker died) and runs again.
    pub rescue_after_secs: u64,
    /// Delay before the first retry; it doubles with every further failed attempt...
    pub backoff_base_secs: u64,
    /// ...up to this.
    pub backoff_max_secs: u64,
    /// Days finished (succeeded and dead) jobs are kept before they are pruned.
    pub keep_days: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            poll_secs: 5,
            heartbeat_secs: 10,
            rescue_after_secs: 300,
            backoff_base_secs: 30,
            backoff_max_secs: 3600,
            keep_days: 30,
        }
    }
}

/// When the built-in schedules run: five-field cron expressions (minute hour day-of-month month
/// day-of-week) in the business timezone, or `"off"`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulesConfig {
    /// A full backup (kept by `backup.retention.full`).
    pub backup_full: String,
    /// A snapshot backup (the same kind of file, kept by `backup.retention.snapshot`).
    pub backup_snapshot: String,
    /// Deletes backups beyond the retention counts and leftovers of interrupted backups.
    pub backup_retention: String,
    /// Verifies the audit chain; a broken chain is a security event.
    pub audit_verify: String,
    /// Prunes finished jobs older than `jobs.keep_days` and expired idempotency keys.
    pub prune: String,
    /// Checks the backup targets: copies still there, missing ones queued (at a target's own
    /// schedule when it has one), a target more than a day behind reported.
    pub backup_targets: String,
    /// Looks for suspicious patterns (returns, voids, discounts, no-sales, hours) in the
    /// current and the previous business day.
    pub flags: String,
    /// Proposes the customers to erase (inactive longer than `customers.retention_days`);
    /// nothing is erased by it.
    pub customer_retention: String,
    /// Checks the report rollups of the last 35 business days against the sale lines and
    /// rebuilds the days that differ.
    pub report_rollups: String,
}

impl Default for SchedulesConfig {
    fn default() -> Self {
        Self {
            backup_full: "0 2 * * *".to_owned(),
            backup_snapshot: "0 8-20/2 * * *".to_owned(),
            backup_retention: "30 2 * * *".to_owned(),
            audit_verify: "0 3 * * *".to_owned(),
            prune: "30 3 * * *".to_owned(),
            backup_targets: "*/10 * * * *".to_owned(),
            flags: "7 * * * *".to_owned(),
            customer_retention: "45 3 * * *".to_owned(),
            report_rollups: "15 4 * * *".to_owned(),
        }
    }
}

impl SchedulesConfig {
    /// `(name, expression)` of every schedule, `"off"` ones included.
    pub fn entries(&self) -> [(&'static str, &str); 9] {
        [
            ("backup_full", &self.backup_full),
            ("backup_snapshot", &self.backup_snapshot),
            ("backup_retention", &self.backup_retention),
            ("audit_verify", &self.audit_verify),
            ("prune", &self.prune),
            ("backup_targets", &self.backup_targets),
            ("flags", &self.flags),
            ("customer_retention", &self.customer_retention),
            ("report_rollups", &self.report_rollups),
        ]
    }
}

/// Live updates on `/api/v1/ws`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebSocketConfig {
    /// Seconds between heartbeats; a client silent for two of them is disconnected.
    pub heartbeat_secs: u64,
    /// Events queued for one client; a client that falls this far behind is disconnected.
    pub queue_capacity: usize,
    /// WebSocket connections one user may hold at once; more are refused (429 `ws.too_many_connections`).
    pub max_connections_per_user: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            heartbeat_secs: 20,
            queue_capacity: 256,
            max_connections_per_user: 8,
        }
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to bind; `127.0.0.1` by default. Binding to the LAN is an explicit choice.
    pub bind: IpAddr,
    /// TCP port; 0 picks a free port (the chosen one is logged).
    pub port: u16,
    /// A request that takes longer is answered 408 `request.timeout`.
    pub request_timeout_secs: u64,
    /// Largest accepted request body; larger ones are answered 413 `request.too_large`.
    pub body_limit_bytes: usize,
    /// How long a shutdown waits for in-flight requests before it stops anyway.
    pub shutdown_grace_secs: u64,
    /// Cross-origin requests from browsers (hosted mode's browser clients).
    pub cors: CorsConfig,
    /// HTTPS instead of HTTP, when a certificate and its key are named.
    pub tls: TlsConfig,
}

/// The certificate the server presents (PEM files, read again when they change).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (PEM). A relative path is in the data directory.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1). A relative path is in the data directory.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// Both files, resolved against `data_dir`, when TLS is on.
    pub fn files(&self, data_dir: &Path) -> Option<(PathBuf, PathBuf)> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((data_dir.join(cert), data_dir.join(key))),
            _ => None,
        }
    }
}

/// Which web pages' scripts may call the API from a browser.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins (`https://shop.example`, scheme and host, a port if not the default, nothing
    /// after) whose pages may call the API. None by default: browsers refuse cross-origin calls.
    pub allowed_origins: Vec<String>,
}

/// Whether `origin` is a bare origin: `http(s)://host[:port]`, nothing after, no wildcard.
fn is_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

/// The database: the managed cluster by default, or an external PostgreSQL.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `postgres://...` of an existing database. Unset means the managed cluster under `<data_dir>/pg`.
    /// The server works as this user; give it only the grants of `plugpos_app` (see operations.md).
    #[serde(serialize_with = "redacted")]
    pub url: Option<SecretString>,
    /// `postgres://...` of the same database as its owner, used only to run migrations. Unset: `url`
    /// runs them too (then the audit log is protected by triggers only, not by grants).
    #[serde(serialize_with = "redacted")]
    pub owner_url: Option<SecretString>,
    /// Largest number of pooled connections for requests and jobs; the sales writer opens two
    /// more of its own.
    pub max_connections: u32,
    /// Directory holding `initdb`, `pg_ctl` and `postgres`; searched on PATH and under
    /// `/usr/lib/postgresql/<version>/bin` when unset.
    pub pg_bin_dir: Option<PathBuf>,
}

impl PartialEq for DatabaseConfig {
    fn eq(&self, other: &Self) -> bool {
        self.url.as_ref().map(|u| u.expose_secret().to_owned())
            == other.url.as_ref().map(|u| u.expose_secret().to_owned())
            && self
                .owner_url
                .as_ref()
                .map(|u| u.expose_secret().to_owned())
                == other
                    .owner_url
                    .as_ref()
                    .map(|u| u.expose_secret().to_owned())
            && self.max_connections == other.max_connections
            && self.pg_bin_dir == other.pg_bin_dir
    }
}

/// Logins, tokens and sessions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Lifetime of an access token (JWT).
    pub access_token_minutes: u64,
    /// Absolute lifetime of a session: refreshing never extends it past this.
    pub session_lifetime_hours: u64,
    /// Most sessions one user may have open at once.
    pub max_sessions_per_user: u32,
    /// At the limit: `end_oldest` (the oldest session ends) or `refuse_new` (the login is refused).
    pub session_limit: SessionLimitPolicy,
    /// Consecutive failed logins for one username from one client address after which each
    /// further attempt from there must wait (progressively longer).
    pub throttle_after_failures: u32,
    /// Consecutive failed logins for one username from one client address after which that
    /// address is locked out of the account.
    pub lockout_after_failures: u32,
    /// Failed logins for one username from all addresses together, within `lockout_minutes`,
    /// after which the account is locked everywhere (the softer, account-wide limit).
    pub account_lockout_after_failures: u32,
    /// How long a lockout lasts unless an admin unlocks the account sooner.
    pub lockout_minutes: u64,
    /// Password hashes computed at once (each takes 19 MiB and a core for a moment).
    pub max_concurrent_hashes: usize,
    /// Logins that may wait for a hash; beyond, a login is refused at once (429 `auth.busy`).
    pub max_queued_hashes: usize,
    /// Unauthenticated writes (login, refresh, setup) one client address may send per minute...
    pub public_requests_per_minute: u32,
    /// ...and in a burst.
    pub public_requests_burst: u32,
    /// Days security events are kept before the prune job deletes them (at least 30).
    pub security_events_retention_days: u32,
}

/// What happens when a user already has the most sessions allowed.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionLimitPolicy {
    EndOldest,
    RefuseNew,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_minutes: 15,
            session_lifetime_hours: 12,
            max_sessions_per_user: 5,
            session_limit: SessionLimitPolicy::EndOldest,
            throttle_after_failures: 5,
            lockout_after_failures: 10,
            account_lockout_after_failures: 50,
            lockout_minutes: 30,
            max_concurrent_hashes: 2,
            max_queued_hashes: 16,
            public_requests_per_minute: 60,
            public_requests_burst: 20,
            security_events_retention_days: 365,
        }
    }
}

/// System logs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `warn,plugpos=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// Days of rotated log files kept in `<data_dir>/logs`.
    pub retention_days: usize,
    /// Also write JSON lines to standard output.
    pub stdout: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./plugpos-data"),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            websocket: WebSocketConfig::default(),
            jobs: JobsConfig::default(),
            schedules: SchedulesConfig::default(),
            backup: BackupConfig::default(),
            upgrade: UpgradeConfig::default(),
            sources: BTreeMap::new(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8470,
            request_timeout_secs: 30,
            body_limit_bytes: 1024 * 1024,
            shutdown_grace_secs: 20,
            cors: CorsConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            owner_url: None,
            max_connections: 16,
            pg_bin_dir: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            retention_days: 14,
            stdout: true,
        }
    }
}

/// A secret as the settings show it: whether it is set, never what it is.
fn redacted<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_some(REDACTED),
        None => serializer.serialize_none(),
    }
}

/// What the settings show in place of a secret.
pub const REDACTED: &str = "(set, redacted)";

/// A configuration error: one line, naming the key (and where its value came from).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn key(key: &str, source: Option<&String>, message: impl std::fmt::Display) -> Self {
        match source {
            Some(source) => Self(format!("config key `{key}` ({source}): {message}")),
            None => Self(format!("config key `{key}`: {message}")),
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then `PLUGPOS_*` variables from `env`, and validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = toml::Table::new();
        let mut sources: BTreeMap<String, String> = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError(format!("cannot read config file {}: {e}", path.display()))
            })?;
            table = text.parse::<toml::Table>().map_err(|e| {
                let msg = e.message().to_owned();
                ConfigError(format!(
                    "config file {} is not valid TOML: {msg}",
                    path.display()
                ))
            })?;
            collect_sources(
                &table,
                "",
                &format!("from {}", path.display()),
                &mut sources,
            );
        }
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if name == CONFIG_FILE_ENV {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            let key = path.join(".");
            if path.iter().any(String::is_empty) {
                return Err(ConfigError(format!(
                    "environment variable {name} does not name a config key"
                )));
            }
            insert_path(&mut table, &path, env_value(&value))
                .map_err(|m| ConfigError::key(&key, Some(&format!("from {name}")), m))?;
            sources.insert(key, format!("from {name}"));
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let message = inner.message().to_owned();
                // An unknown key is reported at its parent; name the key itself.
                if let Some(unknown) = unknown_field(&message) {
                    // serde_path_to_error already ends the path with the unknown key.
                    let full = if key == unknown || key.ends_with(&format!(".{unknown}")) {
                        key.clone()
                    } else if key == "." || key.is_empty() {
                        unknown.to_owned()
                    } else {
                        format!("{key}.{unknown}")
                    };
                    return ConfigError::key(&full, sources.get(&full), "unknown key");
                }
                ConfigError::key(&key, sources.get(&key), message)
            })?;
        config.validate(&sources)?;
        config.sources = sources;
        Ok(config)
    }

    /// Checks the values that types alone cannot (ranges, formats). Stays whole: one check per
    /// setting, in the order of the example file, so a reader finds a key's rule by its name.
    pub fn validate(&self, sources: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let fail = |key: &str, msg: &str| Err(ConfigError::key(key, sources.get(key), msg));
        if self.data_dir.as_os_str().is_empty() {
            return fail("data_dir", "must not be empty");
        }
        if self.http.request_timeout_secs == 0 {
            return fail("http.request_timeout_secs", "must be at least 1");
        }
        if self.http.body_limit_bytes < 1024 {
            return fail("http.body_limit_bytes", "must be at least 1024");
        }
        if let Some(bad) = self
            .http
            .cors
            .allowed_origins
            .iter()
            .find(|o| !is_origin(o))
        {
            return fail(
                "http.cors.allowed_origins",
                &format!(
                    "`{bad}` is not an origin like https://shop.example (scheme and host, a port, nothing after)"
                ),
            );
        }
        match (&self.http.tls.cert, &self.http.tls.key) {
            (Some(_), None) => return fail("http.tls.key", "is needed with http.tls.cert"),
            (None, Some(_)) => return fail("http.tls.cert", "is needed with http.tls.key"),
            _ => {}
        }
        if self.database.max_connections == 0 {
            return fail("database.max_connections", "must be at least 1");
        }
        for (key, url) in [
            ("database.url", &self.database.url),
            ("database.owner_url", &self.database.owner_url),
        ] {
            if let Some(url) = url {
                let url = url.expose_secret();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return fail(key, "must start with postgres:// or postgresql://");
                }
            }
        }
        for (i, key) in self.upgrade.trusted_keys.iter().enumerate() {
            let valid = hex::decode(key.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .is_some_and(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).is_ok());
            if !valid {
                return fail(
                    &format!("upgrade.trusted_keys.{i}"),
                    "must be a hex ed25519 public key (64 hex digits, from `plugpos package keygen`)",
                );
            }
        }
        let mut target_names = std::collections::BTreeSet::new();
        for (i, target) in self.backup.targets.iter().enumerate() {
            let key = format!("backup.targets.{i}");
            if let Some(problem) = target.problems().into_iter().next() {
                return Err(ConfigError::key(
                    &key,
                    sources.get("backup.targets"),
                    problem,
                ));
            }
            if !target_names.insert(&target.name) {
                return Err(ConfigError::key(
                    &key,
                    sources.get("backup.targets"),
                    format!("the name {} is taken", target.name),
                ));
            }
        }
        if self.database.owner_url.is_some() && self.database.url.is_none() {
            return fail(
                "database.owner_url",
                "is only used together with database.url",
            );
        }
        let auth = &self.auth;
        if auth.access_token_minutes == 0 || auth.access_token_minutes > 24 * 60 {
            return fail("auth.access_token_minutes", "must be between 1 and 1440");
        }
        if auth.session_lifetime_hours == 0 {
            return fail("auth.session_lifetime_hours", "must be at least 1");
        }
        if auth.max_sessions_per_user == 0 {
            return fail("auth.max_sessions_per_user", "must be at least 1");
        }
        if auth.throttle_after_failures == 0 {
            return fail("auth.throttle_after_failures", "must be at least 1");
        }
        if auth.lockout_after_failures <= auth.throttle_after_failures {
            return fail(
                "auth.lockout_after_failures",
                "must be greater than auth.throttle_after_failures",
            );
        }
        if auth.account_lockout_after_failures < auth.lockout_after_failures {
            return fail(
                "auth.account_lockout_after_failures",
                "must be at least auth.lockout_after_failures",
            );
        }
        if auth.public_requests_per_minute == 0 || auth.public_requests_burst == 0 {
            return fail(
                "auth.public_requests_per_minute",
                "and auth.public_requests_burst must be at least 1",
            );
        }
        if auth.security_events_retention_days < 30 {
            return fail("auth.security_events_retention_days", "must be at least 30");
        }
        if auth.lockout_minutes == 0 {
            return fail("auth.lockout_minutes", "must be at least 1");
        }
        if !(1..=3600).contains(&self.websocket.heartbeat_secs) {
            return fail("websocket.heartbeat_secs", "must be between 1 and 3600");
        }
        if !(1..=1024).contains(&self.websocket.max_connections_per_user) {
            return fail(
                "websocket.max_connections_per_user",
                "must be between 1 and 1024",
            );
        }
        if !(1..=65536).contains(&self.websocket.queue_capacity) {
            return fail("websocket.queue_capacity", "must be between 1 and 65536");
        }
        if auth.max_concurrent_hashes == 0 {
            return fail("auth.max_concurrent_hashes", "must be at least 1");
        }
        if self.log.retention_days == 0 {
            return fail("log.retention_days", "must be at least 1");
        }
        let jobs = &self.jobs;
        if !(1..=64).contains(&jobs.workers) {
            return fail("jobs.workers", "must be between 1 and 64");
        }
        for (key, value) in [
            ("jobs.poll_secs", jobs.poll_secs),
            ("jobs.heartbeat_secs", jobs.heartbeat_secs),
            ("jobs.backoff_base_secs", jobs.backoff_base_secs),
        ] {
            if !(1..=86_400).contains(&value) {
                return fail(key, "must be between 1 and 86400");
            }
        }
        if jobs.rescue_after_secs < 3 * jobs.heartbeat_secs {
            return fail(
                "jobs.rescue_after_secs",
                "must be at least three times jobs.heartbeat_secs",
            );
        }
        if jobs.backoff_max_secs < jobs.backoff_base_secs {
            return fail(
                "jobs.backoff_max_secs",
                "must be at least jobs.backoff_base_secs",
            );
        }
        if jobs.keep_days == 0 {
            return fail("jobs.keep_days", "must be at least 1");
        }
        for (name, expression) in self.schedules.entries() {
            if let Err(e) = crate::shared::cron::parse_cron(expression) {
                return fail(&format!("schedules.{name}"), &e);
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return fail(
                "log.level",
                "is not a valid level or filter (e.g. \"info\" or \"warn,plugpos=debug\")",
            );
        }
        Ok(())
    }

    /// The external database URL, if one is configured.
    pub fn external_database_url(&self) -> Option<&str> {
        self.database.url.as_ref().map(|u| u.expose_secret())
    }

    /// The external database's owner URL (for migrations), if one is configured.
    pub fn external_owner_url(&self) -> Option<&str> {
        self.database.owner_url.as_ref().map(|u| u.expose_secret())
    }
}

/// Environment values are strings; numbers and booleans are recognised so that
/// `PLUGPOS_HTTP__PORT=9000` means the number 9000.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(n) = raw.parse::<i64>() {
        return toml::Value::Integer(n);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_owned()),
    }
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

fn collect_sources(
    table: &toml::Table,
    prefix: &str,
    source: &str,
    out: &mut BTreeMap<String, String>,
) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if let toml::Value::Table(inner) = v {
            collect_sources(inner, &key, source, out);
        }
        out.insert(key, source.to_owned());
    }
}

/// Extracts `name` from serde's "unknown field `name`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).expect("example parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn env_overrides_nested_keys_with_types() {
        let c = Config::load(
            None,
            env(&[
                ("PLUGPOS_HTTP__PORT", "9001"),
                ("PLUGPOS_DATA_DIR", "/srv/x"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.http.port, 9001);
        assert_eq!(c.data_dir, PathBuf::from("/srv/x"));
    }

    #[test]
    fn unknown_env_key_is_named() {
        let err = Config::load(None, env(&[("PLUGPOS_HTTP__PROT", "1")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "config key `http.prot` (from PLUGPOS_HTTP__PROT): unknown key"
        );
    }

    #[test]
    fn a_trusted_key_that_is_not_one_is_named() {
        let dir = std::env::temp_dir().join(format!("plugpos-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("keys.toml");
        std::fs::write(&file, "[upgrade]\ntrusted_keys = [\"not-a-key\"]\n").unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(
            err.starts_with("config key `upgrade.trusted_keys.0`")
                && err.contains("must be a hex ed25519 public key"),
            "{err}"
        );
        let key = "ab32c76d05138522ed6114c97b398108d5a1b260ba9470c4a6bc15626f11ed69";
        std::fs::write(&file, format!("[upgrade]\ntrusted_keys = [\"{key}\"]\n")).unwrap();
        let config = Config::load(Some(&file), env(&[])).unwrap();
        assert_eq!(config.upgrade.trusted_keys, [key]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_value_is_named() {
        let err = Config::load(None, env(&[("PLUGPOS_HTTP__PORT", "eighty")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config key `http.port` (from PLUGPOS_HTTP__PORT): "),
            "{err}"
        );
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Config::load(
            None,
            env(&[("PLUGPOS_DATABASE__URL", "postgres://u:hunter2hunter2@db/x")]),
        )
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2hunter2"), "{shown}");
        assert_eq!(
            c.external_database_url(),
            Some("postgres://u:hunter2hunter2@db/x")
        );
    }
}
