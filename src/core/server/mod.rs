//! `plugpos serve`: start the database, migrate, check, listen, and shut down cleanly.

pub mod app;
pub mod assemble;
pub mod middleware;
pub mod openapi;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::serve::ListenerExt;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::core::auth::tokens::SigningKey;
use crate::core::backup::{self, DbTarget};
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::data_dir::pid_file::PidFile;
use crate::core::db::external_options;
use crate::core::db::migrations;
use crate::core::db::{self, lazy_pool};
use crate::core::jobs::runner::{Handlers, Runner};
use crate::core::jobs::schedule;
use crate::core::modules::{ModuleStates, Registry};
use crate::core::postgres::supervisor::{ClusterState, Supervisor};
use crate::core::postgres::{APP_ROLE, ClusterOptions, DATABASE_NAME, ManagedCluster};
use crate::core::server::assemble::{Capabilities, assemble};
use crate::core::state::{AppParts, AppState};
use crate::core::{audit, health, logging, metrics, setup};
use crate::shared::clock::Clock;

/// Runs the server until SIGTERM or SIGINT, then drains requests, closes the pool and stops
/// the managed cluster.
pub async fn serve(config: Config, registry: Registry) -> anyhow::Result<()> {
    // Registered first, so a signal during startup is not fatal: it is handled once we are up.
    let mut shutdown = ShutdownSignal::register()?;
    let data_dir = DataDir::prepare(&config.data_dir)?;
    let _log = logging::init_server(&config.log, &data_dir.logs())?;
    let _pid_file = PidFile::acquire(&data_dir)?;
    metrics::handle();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %data_dir.root().display(), "plugpos starting");

    let (pool, owner, supervisor, backup_target) = match config.external_database_url() {
        Some(url) => {
            tracing::info!("using the external database from database.url");
            let pool = lazy_pool(external_options(url)?, config.database.max_connections);
            let owner = match config.external_owner_url() {
                Some(owner_url) => lazy_pool(external_options(owner_url)?, 1),
                None => {
                    tracing::warn!(
                        "database.owner_url is not set: migrations run as the database.url user, and the audit log is \
                         protected by triggers only, not by grants (see docs/operations.md)"
                    );
                    // A pool of its own: it is closed once migrations ran.
                    lazy_pool(external_options(url)?, 1)
                }
            };
            let target = DbTarget::new(config.external_owner_url().unwrap_or(url));
            (pool, owner, None, target)
        }
        None => {
            let cluster = ManagedCluster::new(
                &data_dir,
                config.database.pg_bin_dir.as_deref(),
                ClusterOptions::default(),
            )?;
            let supervisor = Supervisor::start(cluster.clone()).await?;
            if let Err(e) = cluster.ensure_database(DATABASE_NAME).await {
                supervisor.shutdown().await;
                return Err(e);
            }
            let pool = lazy_pool(
                cluster.connect_options_as(DATABASE_NAME, APP_ROLE),
                config.database.max_connections,
            );
            let owner = lazy_pool(cluster.connect_options(DATABASE_NAME), 1);
            let target = DbTarget::managed(cluster.socket_dir(), DATABASE_NAME);
            (pool, owner, Some(supervisor), target)
        }
    };
    let cluster_state = supervisor.as_ref().map(Supervisor::state);
    let database = Database {
        pool: pool.clone(),
        owner: owner.clone(),
        cluster: cluster_state,
        backup_target,
    };
    let result = run(config, registry, data_dir, database, &mut shutdown).await;
    pool.close().await;
    owner.close().await;
    if let Some(supervisor) = supervisor {
        supervisor.shutdown().await;
    }
    match &result {
        Ok(()) => tracing::info!("plugpos stopped"),
        Err(e) => tracing::error!(error = format!("{e:#}"), "plugpos stopped on an error"),
    }
    result
}

/// The opened database, as the server uses it.
struct Database {
    /// As the application role.
    pool: PgPool,
    /// As the schema's owner (migrations only).
    owner: PgPool,
    /// The supervisor's view of the managed cluster (`None` with an external database).
    cluster: Option<tokio::sync::watch::Receiver<ClusterState>>,
    /// With the rights backups and restores need.
    backup_target: DbTarget,
}

/// The server's life from a connected database to a clean stop. Stays whole: it is the startup
/// and shutdown sequence in the order it happens, and which cleanup each failure needs depends on
/// how far it got; split, that order would be spread over several functions.
async fn run(
    config: Config,
    registry: Registry,
    data_dir: DataDir,
    database: Database,
    shutdown: &mut ShutdownSignal,
) -> anyhow::Result<()> {
    let Database {
        pool,
        owner,
        cluster,
        backup_target,
    } = database;
    db::ping(&pool)
        .await
        .context("the database is unreachable")?;
    // Migrations run as the schema's owner; the server works as the least-privileged role.
    let applied = migrations::apply(&owner).await?;
    owner.close().await;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    // Records committed before a crash but not chained yet are chained now, then every few
    // seconds and whenever a writer commits.
    let chained = audit::chain::chain_pending(&pool)
        .await
        .context("cannot extend the audit chain")?;
    if chained > 0 {
        tracing::warn!(
            chained,
            "chained audit records left pending by an earlier run"
        );
    }
    let chainer = tokio::spawn(audit::chain::run(pool.clone(), Duration::from_secs(2)));
    let _chainer = AbortOnDrop(chainer);
    let initialized = setup::is_initialized(&pool)
        .await
        .context("cannot read the setup state")?;
    if !initialized {
        let path = setup::token::ensure(&data_dir)?;
        tracing::warn!(
            token_file = %path.display(),
            "this instance is not set up yet: POST /api/v1/setup with the token from the token file, or run `plugpos init`"
        );
        eprintln!(
            "plugpos: not set up yet; the one-time setup token is in {} (POST /api/v1/setup, or run `plugpos init`)",
            path.display()
        );
    }
    let signing_key = SigningKey::load_or_create(&data_dir.keys())?;
    let module_states = registry
        .sync(&pool)
        .await
        .context("cannot record the modules")?;
    let shared = AppParts::new(
        config.clone(),
        data_dir,
        pool,
        cluster,
        initialized,
        Clock::system(),
    );
    let state = assemble(
        shared,
        Capabilities {
            signing_key,
            registry: Arc::new(registry),
            modules: ModuleStates::new(module_states),
            backup_target,
        },
    );
    recover_backups(&state).await;
    let failed: Vec<String> = health::run_checks(&state)
        .await
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    if !failed.is_empty() {
        bail!("startup checks failed: {}", failed.join("; "));
    }
    // TOTP seeds stored before they were sealed are sealed now, not at their owner's next login.
    match crate::core::auth::mfa::seal_stored_seeds(&state).await {
        Ok(0) => {}
        Ok(sealed) => tracing::info!(sealed, "sealed TOTP seeds stored in clear"),
        Err(e) => tracing::warn!(error = format!("{e:#}"), "cannot seal stored TOTP seeds"),
    }

    // Jobs and schedules run beside the HTTP server and stop with it (a job cut short is
    // rescued at the next start).
    let _runner = AbortOnDrop(tokio::spawn(
        Runner::new(state.clone(), state.part::<Handlers>().clone()).run(),
    ));
    // Webhooks hear the server's events for as long as it runs.
    let _webhooks = AbortOnDrop(tokio::spawn(crate::core::webhooks::dispatch(
        state.downgrade(),
    )));
    let scheduling = state.clone();
    let _scheduler = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = schedule::run(scheduling).await {
            tracing::error!(error = format!("{e:#}"), "the scheduler stopped");
        }
    }));

    let tls = config.http.tls.files(state.data_dir().root());
    if tls.is_none() && !config.http.bind.is_loopback() {
        // The shop LAN default stays possible; whoever runs it is told what it means.
        tracing::warn!(
            bind = %config.http.bind,
            "serving plain HTTP beyond this machine: passwords and tokens cross the network unencrypted"
        );
        eprintln!(
            "plugpos: warning: serving plain HTTP on {} (not only this machine): passwords and tokens cross the network unencrypted",
            config.http.bind
        );
    }
    if let Some((cert, _)) = &tls
        && let Ok(not_after) = crate::core::http::tls::not_after(cert)
        && not_after - state.clock().now() < chrono::Duration::days(30)
    {
        // Tills refuse an expired certificate: the admin hears it while there is time.
        tracing::warn!(cert = %cert.display(), %not_after, "the HTTPS certificate expires within 30 days (or has): renew it");
    }
    let address = SocketAddr::new(config.http.bind, config.http.port);
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let grace = Duration::from_secs(config.http.shutdown_grace_secs);
    let service = app::app(state).into_make_service_with_connect_info::<SocketAddr>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stop_rx.await;
    };
    let (server, _watch): (futures_util::future::BoxFuture<'_, std::io::Result<()>>, _) = match tls
    {
        None => {
            announce("http", local, None);
            let server = axum::serve(listener, service).with_graceful_shutdown(stopped);
            (Box::pin(server.into_future()), None)
        }
        Some((cert, key)) => {
            let certificates = crate::core::http::tls::Certificates::open(cert, key)?;
            announce("https", local, certificates.fingerprint());
            let watch = AbortOnDrop(tokio::spawn(certificates.clone().watch()));
            let listener = crate::core::http::tls::TlsListener::new(listener, certificates)
                .context("cannot read the listening address")?
                .tap_io(|_| {});
            let server = axum::serve(listener, service).with_graceful_shutdown(stopped);
            (Box::pin(server.into_future()), Some(watch))
        }
    };
    let mut server = server;
    tokio::select! {
        result = &mut server => return result.context("the HTTP server failed"),
        name = shutdown.recv() => tracing::info!(signal = name, "shutting down: draining in-flight requests"),
    }
    let _ = stop_tx.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(result) => result.context("the HTTP server failed while draining")?,
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "in-flight requests did not finish in time; stopping anyway"
        ),
    }
    Ok(())
}

fn announce(scheme: &str, local: SocketAddr, fingerprint: Option<String>) {
    tracing::info!(address = %local, fingerprint = fingerprint.as_deref().unwrap_or(""), "listening on {scheme}://{local}");
    eprintln!(
        "plugpos {} listening on {scheme}://{local}",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(fingerprint) = fingerprint {
        eprintln!("plugpos: certificate SHA-256 fingerprint {fingerprint}");
    }
}

/// Cleans up after an interrupted backup, verification or restore, makes sure the backup key
/// exists, and queues the verification of backups left unverified.
async fn recover_backups(state: &AppState) {
    let keys = state.data_dir().keys();
    match backup::key::ensure(&keys, state.clock().now()) {
        Ok(true) => tracing::warn!(
            file = %backup::key::path(&keys).display(),
            "created the backup key: export it with `plugpos backup export-key` and keep it off this machine"
        ),
        Ok(false) => {}
        Err(e) => tracing::error!(
            error = format!("{e:#}"),
            "cannot create the backup key; backups will fail"
        ),
    }
    let backups = state.backups();
    match backup::restore::recover(&backups).await {
        Ok(cleaned) if !cleaned.is_empty() => {
            tracing::warn!(
                ?cleaned,
                "cleaned up after an interrupted backup or restore"
            )
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot check for leftovers of interrupted backups"),
    }
    if !state.is_initialized().await {
        return;
    }
    for manifest in backups.list() {
        if manifest.status == backup::Status::Pending
            && let Err(e) = backup::jobs::queue_verify(state, manifest.id).await
        {
            tracing::warn!(backup_id = %manifest.id, error = format!("{e:#}"), "cannot queue a verification");
        }
    }
}

/// Stops a background task when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// SIGTERM (systemd, `kill`) and SIGINT (Ctrl-C).
struct ShutdownSignal {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    fn register() -> anyhow::Result<ShutdownSignal> {
        Ok(ShutdownSignal {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
