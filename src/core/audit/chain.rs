//! The chainer: appends committed audit records to the hash chain, in one place, one batch at
//! a time, under an advisory lock, so the chain is linear however many writers there are.
//!
//! Writers never touch the chain head: they insert their records (and an `audit_pending` row)
//! inside their own transaction and carry on. Only committed records are ever chained, so a
//! writer that dies mid-transaction leaves neither a gap nor a fork. See docs/audit-chain.md.
//!
//! Committing writers only [`wake`] the server's one chainer task ([`run`]); it links everything
//! pending in batches, so writers neither wait for the chain nor queue on its lock. Readers that
//! must see the newest records (audit query, export, verify) chain what is pending first.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::core::audit::encoding::{AuditRecord, GENESIS, chain_hash};

/// The advisory lock key that serialises chainers (ASCII "plugaudt").
const CHAIN_LOCK: i64 = 0x706c_7567_6175_6474;
const BATCH: i64 = 2000;
/// After a wake-up, the chainer waits this long for more commits, so that under load one batch
/// (seven round trips and a commit) links dozens of records instead of two or three.
const GATHER: Duration = Duration::from_millis(50);

static WAKE: Notify = Notify::const_new();

/// Tells the chainer that records were committed.
pub fn wake() {
    WAKE.notify_waiters();
}

/// The chainer task: chains whatever is pending whenever a writer commits, and every `every` as
/// a safety net. Runs until dropped.
pub async fn run(pool: PgPool, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        // Registered before chaining, so a commit during the run is not missed.
        let woken = WAKE.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Err(e) = chain_pending(&pool).await {
            tracing::warn!(error = %e, "cannot extend the audit chain; retrying");
        }
        tokio::select! {
            _ = woken => tokio::time::sleep(GATHER).await,
            _ = tick.tick() => {}
        }
    }
}

/// Chains every pending record; returns how many were chained.
pub async fn chain_pending(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK)
            .execute(&mut *tx)
            .await?;
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        // Take a batch by the pending table's key (record ids are time-ordered UUIDv7, so this is
        // oldest first) and order it by time; the cost is per batch, not per pending record.
        // `= ANY(ARRAY(...))` makes the records a lookup by primary key: as a join, the plan
        // assumed a full batch and hashed the whole audit table on every call (4 ms per batch at
        // 14,000 records, growing with the table).
        let batch: Vec<AuditRecord> = sqlx::query_as(
            "SELECT r.* FROM audit_records r \
             WHERE r.id = ANY(ARRAY(SELECT record_id FROM audit_pending ORDER BY record_id LIMIT $1)) \
             ORDER BY r.at, r.id",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if batch.is_empty() {
            tx.rollback().await?;
            return Ok(total);
        }
        let (mut seq, mut prev) = match head {
            Some((seq, hash)) => (
                seq,
                <[u8; 32]>::try_from(hash.as_slice()).unwrap_or(GENESIS),
            ),
            None => (0, GENESIS),
        };
        let mut seqs = Vec::with_capacity(batch.len());
        let mut ids: Vec<Uuid> = Vec::with_capacity(batch.len());
        let mut prevs = Vec::with_capacity(batch.len());
        let mut hashes = Vec::with_capacity(batch.len());
        for record in &batch {
            seq += 1;
            let hash = chain_hash(&prev, seq, record);
            seqs.push(seq);
            ids.push(record.id);
            prevs.push(prev.to_vec());
            hashes.push(hash.to_vec());
            prev = hash;
        }
        sqlx::query(
            "WITH linked AS (INSERT INTO audit_chain (seq, record_id, prev_hash, hash) \
               SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::bytea[], $4::bytea[])) \
             DELETE FROM audit_pending WHERE record_id = ANY($2)",
        )
        .bind(&seqs)
        .bind(&ids)
        .bind(&prevs)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        total += batch.len();
        if (batch.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

/// Where the first audit record of `entity` `entity_id` with `action` sits in the chain: its
/// sequence number and chain hash. `None` while it is not chained yet (the chainer links
/// committed records within tens of milliseconds), or when there is no such record.
pub async fn chained(
    conn: &mut sqlx::PgConnection,
    entity: &str,
    entity_id: &str,
    action: &str,
) -> Result<Option<(i64, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT c.seq, c.hash FROM audit_records r JOIN audit_chain c ON c.record_id = r.id \
         WHERE r.entity = $1 AND r.entity_id = $2 AND r.action = $3 ORDER BY c.seq LIMIT 1",
    )
    .bind(entity)
    .bind(entity_id)
    .bind(action)
    .fetch_optional(conn)
    .await
}
