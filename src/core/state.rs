//! `AppState`: the one state every handler receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;
use tokio::sync::watch;

use crate::core::auth::password::PasswordHashing;
use crate::core::auth::tokens::SigningKey;
use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::postgres::supervisor::ClusterState;
use crate::core::setup;
use crate::shared::clock::Clock;

/// Shared, cheaply cloned application state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    data_dir: DataDir,
    pool: PgPool,
    initialized: AtomicBool,
    cluster: Option<watch::Receiver<ClusterState>>,
    setup_lock: tokio::sync::Mutex<()>,
    signing_key: SigningKey,
    hashing: PasswordHashing,
    clock: Clock,
}

impl AppState {
    /// `cluster` is the supervisor's view of the managed cluster (`None` with an external database).
    pub fn new(
        config: Config,
        data_dir: DataDir,
        pool: PgPool,
        cluster: Option<watch::Receiver<ClusterState>>,
        initialized: bool,
        signing_key: SigningKey,
        clock: Clock,
    ) -> AppState {
        let hashing = PasswordHashing::new(config.auth.max_concurrent_hashes);
        AppState {
            inner: Arc::new(Inner {
                config,
                data_dir,
                pool,
                initialized: AtomicBool::new(initialized),
                cluster,
                setup_lock: tokio::sync::Mutex::new(()),
                signing_key,
                hashing,
                clock,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.inner.data_dir
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The managed cluster's state, or `None` when an external database is used.
    pub fn cluster_state(&self) -> Option<ClusterState> {
        self.inner.cluster.as_ref().map(|rx| rx.borrow().clone())
    }

    /// Has setup run? Once true it stays true; while false the database is asked again, so a
    /// `plugpos init` run next to a running server is noticed at once.
    pub async fn is_initialized(&self) -> bool {
        if self.inner.initialized.load(Ordering::Acquire) {
            return true;
        }
        match setup::is_initialized(self.pool()).await {
            Ok(true) => {
                self.mark_initialized();
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether setup has run");
                false
            }
        }
    }

    /// Records that setup has run.
    pub fn mark_initialized(&self) {
        self.inner.initialized.store(true, Ordering::Release);
    }

    /// The key that signs access tokens.
    pub fn signing_key(&self) -> &SigningKey {
        &self.inner.signing_key
    }

    /// Password hashing, bounded in concurrency.
    pub fn hashing(&self) -> &PasswordHashing {
        &self.inner.hashing
    }

    /// The clock every time-dependent rule reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Serialises setup attempts within this process (the database's singleton row does it across processes).
    pub fn setup_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.setup_lock
    }
}
