//! The retention job: proposes (never erases) the customers with no sale, return or change for
//! longer than `customers.retention_days` (0: off). The list is `GET /api/v1/customers/retention`;
//! a person erases each one (`POST /api/v1/customers/{id}/erase`, reason `retention_expired`).

use std::collections::HashMap;

use chrono::Duration;
use serde_json::{Value, json};

use super::{DEFAULT_RETENTION_DAYS, MODULE, RETENTION_DAYS, store};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::jobs::JobKind;
use crate::core::jobs::runner::JobContext;
use crate::core::settings::Business;
use crate::plugs::management::api::customers::document_sources;

/// The job.
pub const JOB: JobKind = JobKind {
    name: "customers.retention",
    max_attempts: 3,
    description: "Proposes the customers to erase (inactive longer than customers.retention_days)",
    retryable: true,
};

/// Replaces the proposal list with the customers inactive for longer than the retention.
pub async fn job(ctx: JobContext) -> anyhow::Result<Value> {
    let state = &ctx.state;
    let mut conn = state.pool().acquire().await?;
    let Some(business) = Business::load(&mut conn).await? else {
        return Ok(json!({"proposed": 0}));
    };
    let days = business.integer(RETENTION_DAYS, DEFAULT_RETENTION_DAYS);
    let now = state.clock().now();
    let mut proposals = Vec::new();
    if days > 0 {
        let cutoff = now - Duration::days(days);
        let mut latest: HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>> = HashMap::new();
        for source in document_sources(state)? {
            for (customer, at) in (source.latest)(&mut conn).await? {
                let seen = latest.entry(customer).or_insert(at);
                *seen = (*seen).max(at);
            }
        }
        for (customer, changed) in store::unchanged_since(&mut conn, cutoff).await? {
            let last = latest.get(&customer).map_or(changed, |d| changed.max(*d));
            if last < cutoff {
                proposals.push((customer, last));
            }
        }
    }
    drop(conn);
    let mut tx = AuditedTx::begin(state.pool(), Actor::system(JOB.name), now).await?;
    store::propose(&mut tx, &proposals, now).await?;
    tx.record(
        Change::new(
            MODULE,
            "customer_retention",
            "proposals",
            "customer_retention.propose",
        )
        .after(json!({"retention_days": days, "proposed": proposals.len()})),
    )
    .await?;
    tx.commit().await?;
    Ok(json!({"proposed": proposals.len(), "retention_days": days}))
}
