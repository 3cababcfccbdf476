//! The connection pool and the schema's migrations.

pub mod changes;
pub mod migrations;

use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// How long a request waits for a pooled connection before it fails (then readiness says why).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle this long is pinged before it is handed out.
const RECHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Connections opened before this instant are not handed out any more (see [`forget_connections`]).
static FORGOTTEN_BEFORE: Mutex<Option<Instant>> = Mutex::new(None);
/// How many times [`forget_connections`] was called (cached rows are forgotten with them).
static FORGOTTEN_TIMES: AtomicU64 = AtomicU64::new(0);

/// Makes every pool of this process drop the connections it has, instead of handing them out:
/// for when their server sessions were ended on purpose (a restore switching databases) or by a
/// crash (the managed cluster restarted), so that no request gets a dead connection. Every cached
/// row ([`changes`]) is forgotten too: the database behind it may be another one now.
pub fn forget_connections() {
    *FORGOTTEN_BEFORE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    FORGOTTEN_TIMES.fetch_add(1, Ordering::AcqRel);
}

/// How many times connections were forgotten in this process (it only grows).
pub fn forgotten_times() -> u64 {
    FORGOTTEN_TIMES.load(Ordering::Acquire)
}

/// Was a connection of this age opened before the last [`forget_connections`]?
fn is_forgotten(age: Duration) -> bool {
    FORGOTTEN_BEFORE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some_and(|at| age >= at.elapsed())
}

/// A pool that connects on first use, so the server can start (and report unready) while the
/// database is briefly unreachable, and reconnects by itself after PostgreSQL restarts.
pub fn lazy_pool(options: PgConnectOptions, max_connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // A connection whose server session was ended is dead. Those we ended (restore, cluster
        // restart) are forgotten; one idle for a while is pinged before it is handed out. Not
        // every one: under load connections come back within milliseconds, and a ping per
        // acquire was a round trip in every request (three in a sale).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if is_forgotten(meta.age) {
                    return Ok(false);
                }
                if meta.idle_for >= RECHECK_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// Runs `tasks` copies of a writer's loop (`task`, given its pool) on a thread of their own,
/// with a pool of that many connections opened there: a statement's answer is then read at once,
/// not after whatever HTTP work the server's runtime has queued meanwhile (on two busy cores that
/// wait was about half a batch's time; docs/PERFORMANCE.md). A connection's I/O belongs to the
/// runtime that opened it, hence a pool of its own, made from `pool`'s options. The thread ends
/// when every task has. Should the thread not start, the tasks run on the caller's runtime with
/// `pool` instead (so this must be called inside a runtime).
pub fn on_own_thread<F, Fut>(name: &str, pool: &PgPool, tasks: usize, task: F)
where
    F: Fn(PgPool) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let options = pool.connect_options().as_ref().clone();
    let task = std::sync::Arc::new(task);
    let on_thread = task.clone();
    let started = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .and_then(|runtime| {
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    runtime.block_on(async move {
                        let pool = lazy_pool(options, u32::try_from(tasks).unwrap_or(u32::MAX));
                        let mut running = tokio::task::JoinSet::new();
                        for _ in 0..tasks {
                            running.spawn(on_thread(pool.clone()));
                        }
                        while running.join_next().await.is_some() {}
                        pool.close().await;
                    })
                })
        });
    if let Err(e) = started {
        tracing::error!(error = %e, thread = name, "a writer thread could not start; its writers run on the server's runtime");
        for _ in 0..tasks {
            tokio::spawn(task(pool.clone()));
        }
    }
}

/// A transaction on `conn` for a read that needs planner settings of its own (`settings`: name,
/// value), set for that transaction only, so none stays on a pooled connection. Commit it (or
/// drop it) when the read is done; it writes nothing.
pub async fn read_with_settings<'c>(
    conn: &'c mut sqlx::PgConnection,
    settings: &[(&str, &str)],
) -> Result<sqlx::Transaction<'c, sqlx::Postgres>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let (names, values): (Vec<&str>, Vec<&str>) = settings.iter().copied().unzip();
    sqlx::query("SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS s(n, v)")
        .bind(&names)
        .bind(&values)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Proves the database answers (readiness check).
pub async fn ping(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1").execute(pool).await.map(|_| ())
}

/// The constraint a failed statement violated, if that is why it failed: callers turn their own
/// constraints into meaningful errors (`Some("sales_pkey")` -> a replay) and pass the rest on.
pub fn violated_constraint(e: &sqlx::Error) -> Option<&str> {
    e.as_database_error().and_then(|d| d.constraint())
}

/// Connection options for `database.url`; the URL itself is never put into an error message
/// (it may hold a password).
pub fn external_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| anyhow::anyhow!("config key `database.url` is not a valid PostgreSQL URL"))?;
    Ok(options
        .application_name("plugpos")
        .disable_statement_logging())
}

/// Has setup run in this database? (The business row exists: `core::setup` writes it.)
pub async fn is_initialized(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM business)")
        .fetch_one(pool)
        .await
}
