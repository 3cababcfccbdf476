//! `AppState`: the one state every handler receives.
//!
//! It sits low in core: it holds what every capability shares (configuration, data directory,
//! pool, clock, caches, maintenance mode) and, as typed parts, what one capability keeps for the
//! life of the process (the signing key, the live hub, the module registry...). A capability gives
//! `AppState` an accessor for its part in its own module (`impl AppState { fn live(&self) }` in
//! `core::live`), so this file imports none of them and every capability may use the state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::PgPool;
use tokio::sync::watch;

use crate::core::config::Config;
use crate::core::data_dir::DataDir;
use crate::core::db::changes::{Cached, Changes};
use crate::core::postgres::supervisor::ClusterState;
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
    clock: Clock,
    maintenance: Maintenance,
    /// One value per type, given when the state is made ([`AppParts::with`]).
    parts: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    services: Services,
    changes: Arc<Changes>,
}

/// An [`AppState`] that does not keep it alive.
#[derive(Clone)]
pub struct WeakState(std::sync::Weak<Inner>);

impl WeakState {
    /// The state, unless it was dropped.
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(|inner| AppState { inner })
    }
}

/// Long-lived helpers that plug modules start on first use and keep for the life of the state
/// (e.g. the sales writer), one per type. Core does not know their types.
#[derive(Default)]
struct Services(std::sync::Mutex<Vec<Arc<dyn Any + Send + Sync>>>);

/// Maintenance mode: while a restore switches databases, the API answers 503 `maintenance`.
#[derive(Debug, Default)]
pub struct Maintenance {
    reason: std::sync::Mutex<Option<String>>,
}

impl Maintenance {
    /// Enters maintenance mode until the returned guard is dropped.
    pub fn enter(&self, reason: String) -> MaintenanceGuard<'_> {
        tracing::warn!(reason = %reason, "entering maintenance mode");
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        MaintenanceGuard(self)
    }

    /// Why the instance is in maintenance mode, if it is.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Leaves maintenance mode when dropped (also when the restore fails or panics).
pub struct MaintenanceGuard<'a>(&'a Maintenance);

impl Drop for MaintenanceGuard<'_> {
    fn drop(&mut self) {
        *self.0.reason.lock().unwrap_or_else(|e| e.into_inner()) = None;
        tracing::info!("left maintenance mode");
    }
}

/// What an [`AppState`] is made of: the shared pieces, and one typed part per capability that
/// keeps something for the life of the process.
pub struct AppParts {
    pub config: Config,
    pub data_dir: DataDir,
    /// Connected as the application role.
    pub pool: PgPool,
    /// The supervisor's view of the managed cluster (`None` with an external database).
    pub cluster: Option<watch::Receiver<ClusterState>>,
    /// Has setup run?
    pub initialized: bool,
    pub clock: Clock,
    parts: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl AppParts {
    /// The shared pieces, with no typed part yet.
    pub fn new(
        config: Config,
        data_dir: DataDir,
        pool: PgPool,
        cluster: Option<watch::Receiver<ClusterState>>,
        initialized: bool,
        clock: Clock,
    ) -> AppParts {
        AppParts {
            config,
            data_dir,
            pool,
            cluster,
            initialized,
            clock,
            parts: HashMap::new(),
        }
    }

    /// Adds the part of type `T` (replacing an earlier one).
    pub fn with<T: Send + Sync + 'static>(mut self, part: T) -> AppParts {
        self.parts.insert(TypeId::of::<T>(), Arc::new(part));
        self
    }
}

impl AppState {
    /// Assembles the state. The capabilities' accessors expect their parts: the server (and the
    /// tests' harness) give every one (`core::server::parts`).
    pub fn from_parts(parts: AppParts) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                config: parts.config,
                data_dir: parts.data_dir,
                pool: parts.pool,
                initialized: AtomicBool::new(parts.initialized),
                cluster: parts.cluster,
                setup_lock: tokio::sync::Mutex::new(()),
                clock: parts.clock,
                maintenance: Maintenance::default(),
                parts: parts.parts,
                services: Services::default(),
                changes: Arc::default(),
            }),
        }
    }

    /// The part of type `T` given when the state was made.
    ///
    /// # Panics
    /// When it was not given: the state was assembled without a capability's part, a bug of
    /// whoever assembled it, found by the first request that needs it.
    pub fn part<T: Send + Sync + 'static>(&self) -> &T {
        self.inner
            .parts
            .get(&TypeId::of::<T>())
            .and_then(|p| p.downcast_ref::<T>())
            .unwrap_or_else(|| {
                panic!(
                    "the state was assembled without its {} part",
                    std::any::type_name::<T>()
                )
            })
    }

    /// Maintenance mode (a restore in progress).
    pub fn maintenance(&self) -> &Maintenance {
        &self.inner.maintenance
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

    /// A handle that does not keep the state alive: what a service's background task holds
    /// (see [`AppState::service`]), upgrading it for each round of work.
    pub fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.inner))
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
        match crate::core::db::is_initialized(self.pool()).await {
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

    /// The clock every time-dependent rule reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Serialises setup attempts within this process (the database's singleton row does it across processes).
    pub fn setup_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.setup_lock
    }

    /// The one `T` of this state, made by `start` on first use. A plug keeps its long-lived
    /// helpers here (they end with the state); `start` must not keep a clone of the state itself,
    /// or neither would ever be dropped, and runs under the slot's lock, so it must not ask for
    /// another service.
    pub fn service<T: Send + Sync + 'static>(&self, start: impl FnOnce(&AppState) -> T) -> Arc<T> {
        let mut services = self
            .inner
            .services
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(found) = services.iter().find_map(|s| s.clone().downcast::<T>().ok()) {
            return found;
        }
        let made = Arc::new(start(self));
        services.push(made.clone());
        made
    }

    /// Hands `value` to whoever asks for a `T` ([`AppState::provided`]), replacing an earlier
    /// one. This is how a module gives something to a module that cannot depend on it (because
    /// the receiver is its own dependency): the receiver's `api` declares `T`, the giver provides
    /// it from its [`Module::install`](crate::core::modules::Module::install). Sales, for example,
    /// give the cash module a session's sales totals.
    pub fn provide<T: Send + Sync + 'static>(&self, value: T) {
        let mut services = self
            .inner
            .services
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        services.retain(|s| !s.is::<T>());
        services.push(Arc::new(value));
    }

    /// The `T` a module provided, if one did.
    pub fn provided<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let services = self
            .inner
            .services
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        services.iter().find_map(|s| s.clone().downcast::<T>().ok())
    }

    /// When cached rows must be forgotten (see [`crate::core::db::changes`]); the first call
    /// starts listening for changes.
    pub fn changes(&self) -> &Arc<Changes> {
        self.inner.changes.start(&self.inner.pool);
        &self.inner.changes
    }

    /// This state's cache of `V` by `K` (one per pair of types: wrap a private type to own one).
    pub fn cache<K, V>(&self, capacity: usize) -> Arc<Cached<K, V>>
    where
        K: Eq + std::hash::Hash + Send + 'static,
        V: Clone + Send + 'static,
    {
        let changes = self.changes().clone();
        self.service(move |_| Cached::new(changes, capacity))
    }
}
