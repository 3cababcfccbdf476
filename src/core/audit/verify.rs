//! Recomputes the chain from the first record, streaming (constant memory), and reports the
//! first place where it breaks.

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;

use crate::core::audit::checkpoint::{Checkpoint, check_signature};
use crate::core::audit::encoding::{AuditRecord, GENESIS, chain_hash};

/// The chain's last link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
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

struct Link {
    seq: i64,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
    /// `None` when the chain points at a record that no longer exists.
    record: Option<AuditRecord>,
}

impl<'r> sqlx::FromRow<'r, PgRow> for Link {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let present: bool = row.try_get("present")?;
        Ok(Link {
            seq: row.try_get("seq")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
            record: if present {
                Some(AuditRecord::from_row(row)?)
            } else {
                None
            },
        })
    }
}

/// Verifies the whole chain.
pub async fn verify(pool: &PgPool) -> Result<Report, sqlx::Error> {
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_pending")
        .fetch_one(pool)
        .await?;
    let mut rows = sqlx::query_as::<_, Link>(
        "SELECT c.seq, c.prev_hash, c.hash, r.id IS NOT NULL AS present, r.* FROM audit_chain c LEFT JOIN audit_records r ON r.id = c.record_id ORDER BY c.seq",
    )
    .fetch(pool);
    let mut expected = 1i64;
    let mut prev = GENESIS;
    let mut head = None;
    let fail = |seq: i64, reason: String, verified: i64, head: Option<Head>| Report {
        ok: false,
        verified,
        first_bad_seq: Some(seq),
        reason: Some(reason),
        head,
        pending,
        checkpoints_checked: 0,
    };
    while let Some(link) = rows.try_next().await? {
        let verified = expected - 1;
        if link.seq != expected {
            return Ok(fail(
                expected,
                format!(
                    "record {expected} is missing (the chain jumps to {})",
                    link.seq
                ),
                verified,
                head,
            ));
        }
        let Some(record) = link.record else {
            return Ok(fail(
                link.seq,
                "the record's content is missing".to_owned(),
                verified,
                head,
            ));
        };
        if link.prev_hash.as_slice() != prev {
            return Ok(fail(
                link.seq,
                "its previous hash does not match the record before it".to_owned(),
                verified,
                head,
            ));
        }
        let hash = chain_hash(&prev, link.seq, &record);
        if link.hash.as_slice() != hash {
            return Ok(fail(
                link.seq,
                "its hash does not match its content (the record was changed or moved)".to_owned(),
                verified,
                head,
            ));
        }
        prev = hash;
        head = Some(Head {
            seq: link.seq,
            hash: hex::encode(hash),
        });
        expected += 1;
    }
    drop(rows);
    let orphans: Option<i64> = sqlx::query_scalar(
        "SELECT count(*) FROM audit_records r WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.record_id = r.id) \
         AND NOT EXISTS (SELECT 1 FROM audit_pending p WHERE p.record_id = r.id)",
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
