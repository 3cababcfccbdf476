//! Recomputes the chain from the first record, streaming (constant memory), and reports the
//! first place where it breaks.

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;

use crate::core::audit::checkpoint::{Checkpoint, check_signature};
use crate::core::audit::encoding::{GENESIS, RecordRef, chain_hash_with};

/// The chain's last link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Head {
    pub seq: i64,
    /// Hex SHA-256.
    pub hash: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub ok: bool,
    /// Records verified before the first problem (all of them when `ok`).
    pub verified: i64,
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
    /// The last link that verified.
    pub head: Option<Head>,
    /// Committed records not chained yet (normally 0; the chainer catches up within milliseconds).
    pub pending: i64,
    /// Signed checkpoints compared with the chain.
    pub checkpoints_checked: usize,
}

/// The last link that verified, when `expected` is the next seq to check.
fn last_good(expected: i64, prev: &[u8; 32]) -> Option<Head> {
    (expected > 1).then(|| Head {
        seq: expected - 1,
        hash: hex::encode(prev),
    })
}

/// Verifies the whole chain. Stays whole: one streaming pass that carries the expected sequence
/// number, the previous hash and the encoding buffer from row to row (the 300,000 records/s
/// target, docs/PERFORMANCE.md), and each way a row can be wrong ends it with its report.
pub async fn verify(pool: &PgPool) -> Result<Report, sqlx::Error> {
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_pending")
        .fetch_one(pool)
        .await?;
    // Columns by position and borrowed from the row: verification reads millions of them. The
    // ordered join sorts in memory rather than spilling to disk.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL work_mem = '256MB'")
        .execute(&mut *tx)
        .await?;
    let mut rows = sqlx::query(
        "SELECT c.seq, c.prev_hash, c.hash, r.id IS NOT NULL, r.id, r.at, r.actor_user_id, r.actor_username, r.actor_role, \
                r.workstation_id, r.branch_id, r.module, r.entity, r.entity_id, r.action, r.before_json, r.after_json, \
                r.reason_code, r.approval_ref, r.request_id \
         FROM audit_chain c LEFT JOIN audit_records r ON r.id = c.record_id ORDER BY c.seq",
    )
    .fetch(&mut *tx);
    let mut expected = 1i64;
    let mut prev = GENESIS;
    let mut buf = Vec::with_capacity(512);
    let fail = |seq: i64, reason: String, verified: i64, head: Option<Head>| Report {
        ok: false,
        verified,
        first_bad_seq: Some(seq),
        reason: Some(reason),
        head,
        pending,
        checkpoints_checked: 0,
    };
    while let Some(row) = rows.try_next().await? {
        let verified = expected - 1;
        let seq: i64 = row.try_get(0)?;
        if seq != expected {
            return Ok(fail(
                expected,
                format!("record {expected} is missing (the chain jumps to {seq})"),
                verified,
                last_good(expected, &prev),
            ));
        }
        let present: bool = row.try_get(3)?;
        if !present {
            return Ok(fail(
                seq,
                "the record's content is missing".to_owned(),
                verified,
                last_good(expected, &prev),
            ));
        }
        let stored_prev: &[u8] = row.try_get(1)?;
        if stored_prev != prev {
            return Ok(fail(
                seq,
                "its previous hash does not match the record before it".to_owned(),
                verified,
                last_good(expected, &prev),
            ));
        }
        let record = RecordRef {
            id: row.try_get(4)?,
            at: row.try_get(5)?,
            actor_user_id: row.try_get(6)?,
            actor_username: row.try_get(7)?,
            actor_role: row.try_get(8)?,
            workstation_id: row.try_get(9)?,
            branch_id: row.try_get(10)?,
            module: row.try_get(11)?,
            entity: row.try_get(12)?,
            entity_id: row.try_get(13)?,
            action: row.try_get(14)?,
            before_json: row.try_get(15)?,
            after_json: row.try_get(16)?,
            reason_code: row.try_get(17)?,
            approval_ref: row.try_get(18)?,
            request_id: row.try_get(19)?,
        };
        let hash = chain_hash_with(&mut buf, &prev, seq, &record);
        let stored: &[u8] = row.try_get(2)?;
        if stored != hash {
            return Ok(fail(
                seq,
                "its hash does not match its content (the record was changed or moved)".to_owned(),
                verified,
                last_good(expected, &prev),
            ));
        }
        prev = hash;
        expected += 1;
    }
    let head = last_good(expected, &prev);
    drop(rows);
    tx.rollback().await?;
    // Every chain link was just checked to point at a distinct existing record, so any surplus of
    // records over links and pending markers lies outside the chain (counting is much cheaper
    // than an anti-join over millions of rows).
    let orphans: Option<i64> = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM audit_records) - (SELECT count(*) FROM audit_chain) - (SELECT count(*) FROM audit_pending)",
    )
    .fetch_one(pool)
    .await?;
    let verified = expected - 1;
    if let Some(n) = orphans.filter(|n| *n > 0) {
        return Ok(fail(
            expected,
            format!("{n} record(s) exist outside the chain (inserted behind its back)"),
            verified,
            head,
        ));
    }
    Ok(Report {
        ok: true,
        verified,
        first_bad_seq: None,
        reason: None,
        head,
        pending,
        checkpoints_checked: 0,
    })
}

/// What every verification of this instance does (API, CLI, scheduled job, exports): chains the
/// pending records, then verifies the chain against the stored checkpoints plus `extra` ones,
/// with the instance's checkpoint key from `keys_dir`.
pub async fn verify_instance(
    pool: &PgPool,
    keys_dir: &std::path::Path,
    extra: Vec<Checkpoint>,
) -> Result<Report, sqlx::Error> {
    crate::core::audit::chain::chain_pending(pool).await?;
    let mut checkpoints = crate::core::audit::checkpoint::list(pool).await?;
    checkpoints.extend(extra);
    let instance_key = crate::core::audit::checkpoint::public_key(keys_dir);
    verify_with_checkpoints(pool, &checkpoints, instance_key.as_deref()).await
}

/// Verifies the chain, then compares it with `checkpoints` (signed by `instance_key` when given):
/// a checkpoint beyond the head means a truncated tail, one whose hash differs means a rewrite.
pub async fn verify_with_checkpoints(
    pool: &PgPool,
    checkpoints: &[Checkpoint],
    instance_key: Option<&str>,
) -> Result<Report, sqlx::Error> {
    let mut report = verify(pool).await?;
    if !report.ok {
        return Ok(report);
    }
    let head_seq = report.head.as_ref().map_or(0, |h| h.seq);
    for checkpoint in checkpoints {
        let problem = if let Err(why) = check_signature(checkpoint) {
            Some((checkpoint.seq.max(1), why))
        } else if instance_key.is_some_and(|key| key != checkpoint.public_key) {
            Some((
                checkpoint.seq.max(1),
                "the checkpoint was signed by another key than this instance's".to_owned(),
            ))
        } else if checkpoint.seq > head_seq {
            Some((
                head_seq + 1,
                format!(
                    "the chain ends at record {head_seq} but a checkpoint covers record {}: the tail was removed",
                    checkpoint.seq
                ),
            ))
        } else if checkpoint.seq > 0 {
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT hash FROM audit_chain WHERE seq = $1")
                    .bind(checkpoint.seq)
                    .fetch_optional(pool)
                    .await?;
            (stored.map(hex::encode).as_deref() != Some(checkpoint.hash.as_str())).then(|| {
                (checkpoint.seq, format!("record {} differs from the signed checkpoint: the chain up to it was rewritten", checkpoint.seq))
            })
        } else {
            None
        };
        if let Some((seq, reason)) = problem {
            report.ok = false;
            report.first_bad_seq = Some(seq);
            report.reason = Some(reason);
            return Ok(report);
        }
        report.checkpoints_checked += 1;
    }
    Ok(report)
}
