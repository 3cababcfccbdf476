//! Rows every request reads but that change rarely (the caller's session, the settings, the
//! register, the products sold) kept in memory, and when to forget them.
//!
//! A statement-level trigger on every table such a cache copies (migration 0012) calls
//! `pg_notify('plugpos_changes', <table>)`, which PostgreSQL delivers when the writing
//! transaction commits, whoever wrote (this server, a CLI command, an admin in `psql`). A
//! listener task turns each notification into a new *generation*, and a cached row is only used
//! in the generation it was read in: any change to any watched table forgets every cache.
//! A mutating API request also starts a new generation as soon as it has answered (unless its
//! handler says it changed nothing cached, see [`KeepsCaches`]), so whoever made a change
//! through the API sees it in their next request without waiting for the notification.
//!
//! While the listener is not connected (at start, after PostgreSQL restarted, after a restore
//! ended its session) nothing is cached: every read goes to the database.
//!
//! Why it is safe: a reader takes its [`stamp`](Changes::stamp) *before* it reads the database
//! and keeps what it read only under that stamp. A change's new generation is started after the
//! change committed, so either the read began after the commit (and saw it), or the generation
//! moved on after the stamp was taken (and the row is never used).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// The channel the triggers of migration 0012 notify.
pub const CHANNEL: &str = "plugpos_changes";
/// How often the listener checks that its state still exists (it ends with it).
const ALIVE_CHECK: Duration = Duration::from_secs(1);
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// The generation of cached rows, moved on by every change to a watched table.
#[derive(Debug, Default)]
pub struct Changes {
    generation: AtomicU64,
    listening: AtomicBool,
    started: OnceLock<()>,
}

impl Changes {
    /// Starts the listener on a connection of its own to `pool`'s database (once; later calls do
    /// nothing). It runs on the current Tokio runtime until `self` is dropped.
    pub fn start(self: &Arc<Self>, pool: &PgPool) {
        self.started.get_or_init(|| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            let own = crate::core::db::lazy_pool((*pool.connect_options()).clone(), 1);
            runtime.spawn(listen(Arc::downgrade(self), own));
        });
    }

    /// The generation to read the database in, or `None` while changes are not heard (read, but
    /// do not keep what you read). Take it before the read.
    pub fn stamp(&self) -> Option<u64> {
        self.listening
            .load(Ordering::Acquire)
            .then(|| self.generation())
    }

    /// Forgets every cached row (something they copy has changed, or may have).
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The current generation (it only grows). It also moves on when the process forgets its
    /// connections ([`crate::core::db::forget_connections`]: a restore switched databases, or
    /// PostgreSQL restarted), before the listener may even notice that its own connection died.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire) + crate::core::db::forgotten_times()
    }

    /// How many times this state forgot its cached rows itself (after writes, at notifications),
    /// leaving out the process-wide forgets [`Changes::generation`] also counts.
    pub fn forgotten_here(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Are changes heard (so caches are in use)?
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }
}

/// Put in a response's extensions by a mutating handler that changed no watched table (a sale),
/// so answering it does not forget the caches.
#[derive(Debug, Clone, Copy)]
pub struct KeepsCaches;

async fn listen(changes: Weak<Changes>, pool: PgPool) {
    let mut retry = RETRY_FIRST;
    loop {
        match subscribe(&pool).await {
            Ok(mut listener) => {
                let Some(live) = changes.upgrade() else {
                    return;
                };
                // Whatever changed while nobody listened is forgotten before caching resumes.
                live.forget_all();
                live.listening.store(true, Ordering::Release);
                drop(live);
                retry = RETRY_FIRST;
                let why = hear(&changes, &mut listener).await;
                let Some(live) = changes.upgrade() else {
                    return;
                };
                live.listening.store(false, Ordering::Release);
                tracing::info!(reason = %why, "change notifications interrupted; caches off until they are back");
            }
            Err(e) => {
                if changes.strong_count() == 0 {
                    return;
                }
                tracing::debug!(error = %e, "cannot listen for changes yet; caches off");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(RETRY_MAX);
            }
        }
    }
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is noticed here (`Ok(None)`) and re-established by `listen`, after the
    // caches were turned off.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Moves the generation on at every notification until the connection is lost (returns why)
/// or the state is gone.
async fn hear(changes: &Weak<Changes>, listener: &mut PgListener) -> String {
    loop {
        tokio::select! {
            heard = listener.try_recv() => match heard {
                Ok(Some(_)) => match changes.upgrade() {
                    Some(live) => live.forget_all(),
                    None => return "stopped".to_owned(),
                },
                Ok(None) => return "connection lost".to_owned(),
                Err(e) => return e.to_string(),
            },
            _ = tokio::time::sleep(ALIVE_CHECK) => {
                if changes.strong_count() == 0 {
                    return "stopped".to_owned();
                }
            }
        }
    }
}

/// Rows read from the database, kept for as long as nothing they copy changes.
#[derive(Debug)]
pub struct Cached<K, V> {
    changes: Arc<Changes>,
    capacity: usize,
    entries: Mutex<Entries<K, V>>,
}

#[derive(Debug)]
struct Entries<K, V> {
    generation: u64,
    map: HashMap<K, V>,
}

impl<K: Eq + Hash, V: Clone> Cached<K, V> {
    /// A cache of at most `capacity` rows (when full it starts again empty).
    pub fn new(changes: Arc<Changes>, capacity: usize) -> Cached<K, V> {
        Cached {
            changes,
            capacity: capacity.max(1),
            entries: Mutex::new(Entries {
                generation: 0,
                map: HashMap::new(),
            }),
        }
    }

    /// The row kept for `key` in the current generation.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = self.changes.stamp()?;
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.generation != now {
            return None;
        }
        entries.map.get(key).cloned()
    }

    /// The row for `key`: the kept one, or the one `read` finds, kept under a stamp taken before
    /// `read` ran (a row that is not found is not kept).
    pub async fn get_or_read<E, Fut>(
        &self,
        key: K,
        read: impl FnOnce() -> Fut,
    ) -> Result<Option<V>, E>
    where
        Fut: std::future::Future<Output = Result<Option<V>, E>>,
    {
        if let Some(value) = self.get(&key) {
            return Ok(Some(value));
        }
        let stamp = self.stamp();
        let found = read().await?;
        if let Some(value) = &found {
            self.keep(stamp, key, value.clone());
        }
        Ok(found)
    }

    /// The stamp to read the database under (see [`Changes::stamp`]).
    pub fn stamp(&self) -> Option<u64> {
        self.changes.stamp()
    }

    /// Keeps `value`, read from the database after `stamp` was taken.
    pub fn keep(&self, stamp: Option<u64>, key: K, value: V) {
        let Some(stamp) = stamp else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.generation != stamp {
            if stamp < entries.generation {
                // Read before a change that a newer reader has already seen.
                return;
            }
            entries.generation = stamp;
            entries.map.clear();
        }
        if entries.map.len() >= self.capacity {
            entries.map.clear();
        }
        entries.map.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening() -> Arc<Changes> {
        let changes = Arc::new(Changes::default());
        changes.listening.store(true, Ordering::Release);
        changes
    }

    #[test]
    fn a_row_is_used_only_in_the_generation_it_was_read_in() {
        let changes = listening();
        let cache: Cached<u32, &str> = Cached::new(changes.clone(), 10);
        let stamp = cache.stamp();
        cache.keep(stamp, 1, "one");
        assert_eq!(cache.get(&1), Some("one"));
        changes.forget_all();
        assert_eq!(cache.get(&1), None, "a change forgets it");
        // Read before the change, kept after it: never used.
        cache.keep(stamp, 1, "stale");
        assert_eq!(cache.get(&1), None);
        let fresh = cache.stamp();
        cache.keep(fresh, 1, "fresh");
        assert_eq!(cache.get(&1), Some("fresh"));
        cache.keep(stamp, 2, "stale");
        assert_eq!(
            cache.get(&2),
            None,
            "an older stamp does not push the newer rows out"
        );
        assert_eq!(cache.get(&1), Some("fresh"));
    }

    #[test]
    fn nothing_is_cached_while_changes_are_not_heard() {
        let changes = Arc::new(Changes::default());
        let cache: Cached<u32, &str> = Cached::new(changes.clone(), 10);
        assert_eq!(cache.stamp(), None);
        cache.keep(cache.stamp(), 1, "one");
        changes.listening.store(true, Ordering::Release);
        assert_eq!(cache.get(&1), None);
        cache.keep(cache.stamp(), 1, "one");
        assert_eq!(cache.get(&1), Some("one"));
        changes.listening.store(false, Ordering::Release);
        assert_eq!(cache.get(&1), None, "not used while not listening");
    }

    #[tokio::test]
    async fn a_row_read_while_something_changed_is_read_again() {
        let changes = listening();
        let cache: Cached<u32, u32> = Cached::new(changes.clone(), 10);
        let reads = std::cell::Cell::new(0);
        let read = |forget: bool| {
            reads.set(reads.get() + 1);
            let (changes, value) = (changes.clone(), reads.get());
            async move {
                if forget {
                    changes.forget_all();
                }
                Ok::<_, ()>(Some(value))
            }
        };
        assert_eq!(cache.get_or_read(1, || read(true)).await, Ok(Some(1)));
        assert_eq!(
            cache.get_or_read(1, || read(false)).await,
            Ok(Some(2)),
            "not kept"
        );
        assert_eq!(
            cache.get_or_read(1, || read(false)).await,
            Ok(Some(2)),
            "kept"
        );
        assert_eq!(reads.get(), 2);
        let none: Result<Option<u32>, ()> = cache.get_or_read(2, || async { Ok(None) }).await;
        assert_eq!(none, Ok(None));
    }

    #[test]
    fn a_full_cache_starts_again() {
        let cache: Cached<u32, u32> = Cached::new(listening(), 2);
        for k in 0..3 {
            cache.keep(cache.stamp(), k, k);
        }
        assert_eq!(cache.get(&0), None);
        assert_eq!(cache.get(&2), Some(2));
    }
}
