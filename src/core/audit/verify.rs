//! Recomputes the chain from the first record, streaming (constant memory), and reports the
//! first place where it breaks.

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use utoipa::ToSchema;

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
    })
}
