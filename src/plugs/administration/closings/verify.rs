//! `plugpos closing verify`: every closing's hash and signature, its place in the chain, what
//! its report says about itself, its figures against the documents now, and its grand totals
//! against the day closing before it.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::http::day_start;
use super::period::{self, Kind};
use super::report::{self, ClosingReport, GrandTotals};
use super::store::{self, ClosingRow};
use crate::core::audit::checkpoint;
use crate::core::modules::Verified;
use crate::core::settings::Business;
use crate::plugs::administration::api::places;

/// Checks every closing; a problem is named by the closing's number, kind and date.
pub async fn verify(pool: &PgPool, keys: &Path) -> anyhow::Result<Verified> {
    let mut conn = pool.acquire().await?;
    let Some(business) = Business::load(&mut conn).await? else {
        anyhow::bail!("this instance is not set up");
    };
    let own_key = checkpoint::public_key(keys);
    let rows = store::all(&mut conn).await?;
    let mut problems = Vec::new();
    if own_key.is_none() && !rows.is_empty() {
        problems.push(format!(
            "this instance's signing key ({}) is missing: the closings' signatures can only be checked against the keys they carry, which proves nothing; restore the key",
            keys.join("audit-signing.key").display()
        ));
    }
    let mut previous_hash = vec![0u8; 32];
    let mut grand: HashMap<Uuid, GrandTotals> = HashMap::new();
    let mut last_day_through: HashMap<Uuid, i64> = HashMap::new();
    let mut last_day_end: HashMap<Uuid, (chrono::NaiveDate, chrono::DateTime<chrono::Utc>)> =
        HashMap::new();
    for (expected_seq, row) in (1..).zip(&rows) {
        let name = format!("closing {} ({} {})", row.seq, row.kind, row.business_date);
        let mut found = |what: String| problems.push(format!("{name}: {what}"));
        if row.seq != expected_seq {
            found(format!(
                "is number {} of the chain, expected {expected_seq}",
                row.seq
            ));
        }
        let bytes = report::message(&row.signed_message);
        if Sha256::digest(&bytes).as_slice() != row.hash.as_slice() {
            found("its hash does not match its signed report (the report was altered)".into());
        }
        if !checkpoint::verify_signature(&row.public_key, &bytes, &row.signature) {
            found("its signature does not verify".into());
        }
        if own_key
            .as_deref()
            .is_some_and(|k| k != hex::encode(&row.public_key))
        {
            found("it was signed with another key than this instance's".into());
        }
        if row.previous_hash != previous_hash {
            found("it does not chain to the closing before it".into());
        }
        previous_hash.clone_from(&row.hash);
        let report: ClosingReport = match serde_json::from_str(&row.signed_message) {
            Ok(r) => r,
            Err(e) => {
                found(format!("its report cannot be read: {e}"));
                continue;
            }
        };
        if let Some(what) = copies_follow_on(&mut last_day_through, row, &report) {
            found(what);
        }
        let follows = last_day_end.get(&row.branch_id).copied();
        for what in self_checks(row, &report, &business, follows) {
            found(what);
        }
        if row.kind == "day" {
            last_day_end.insert(row.branch_id, (row.business_date, row.period_end));
        }
        let Some(branch) = places::branch_places(&mut conn, row.branch_id).await? else {
            found("its branch no longer exists".into());
            continue;
        };
        let renders = report.figures.renders();
        let scale = business.currency_scale;
        let now = report::figures(&mut conn, &branch, row.period(), renders, scale).await?;
        if now != report.figures {
            found(format!(
                "its totals no longer equal the documents': {}",
                differences(&report.figures, &now)
            ));
        }
        if row.kind == "day" {
            let expected = report::carried(
                grand.get(&row.branch_id),
                &report.figures,
                business.currency_scale,
            );
            if expected != report.grand_totals {
                found("its grand totals do not carry on from the day closing before it".into());
            }
            grand.insert(row.branch_id, report.grand_totals.clone());
        }
    }
    Ok(Verified {
        ok: problems.is_empty(),
        checked: rows.len(),
        problems,
    })
}

/// What the report says about itself against the row that holds it; `follows`: the branch's
/// day closing before it (a day right after one starts where that one ended).
fn self_checks(
    row: &ClosingRow,
    report: &ClosingReport,
    business: &Business,
    follows: Option<(chrono::NaiveDate, chrono::DateTime<chrono::Utc>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    if report.id != row.id
        || report.seq != row.seq
        || report.kind != row.kind
        || report.branch_id != row.branch_id
    {
        out.push("its report names another closing".into());
    }
    if report.previous_hash != hex::encode(&row.previous_hash) {
        out.push("its report names another previous closing".into());
    }
    if report.period_start != report::instant(row.period_start)
        || report.period_end != report::instant(row.period_end)
    {
        out.push("its report states another period".into());
    }
    if let Some(kind) = Kind::parse(&row.kind) {
        let starts =
            period::parse_day_start(&report.day_starts_at).unwrap_or_else(|| day_start(business));
        let tz = report.timezone.parse().unwrap_or(business.timezone);
        let mut expected = period::period(kind, row.business_date, starts, tz);
        if let (Kind::Day, Some((date, end))) = (kind, follows)
            && date + chrono::Duration::days(1) == row.business_date
            && end < expected.end
        {
            expected.start = end;
        }
        if expected.start != row.period_start || expected.end != row.period_end {
            out.push("its period is not its business date's".into());
        }
    }
    out
}

/// Which parts of the figures differ.
/// A day closing counts the receipt copies since the branch's day closing before it: its range
/// of renders must start where that one's ended (`last_day_through`, updated).
fn copies_follow_on(
    last_day_through: &mut HashMap<Uuid, i64>,
    row: &ClosingRow,
    report: &ClosingReport,
) -> Option<String> {
    if row.kind != "day" {
        return None;
    }
    let before = last_day_through.insert(row.branch_id, report.figures.receipt_renders_through);
    (report.figures.receipt_renders_after != before.unwrap_or(0))
        .then(|| "its receipt copies do not follow on from the day closing before it".to_owned())
}

fn differences(stated: &report::Figures, now: &report::Figures) -> String {
    let mut parts = Vec::new();
    if stated.documents != now.documents {
        parts.push("documents");
    }
    if stated.totals != now.totals {
        parts.push("totals");
    }
    if stated.payments != now.payments {
        parts.push("payments");
    }
    if stated.taxes != now.taxes {
        parts.push("taxes");
    }
    if stated.discounts != now.discounts {
        parts.push("discounts");
    }
    if stated.cash != now.cash {
        parts.push("cash");
    }
    if stated.receipt_copies != now.receipt_copies {
        parts.push("receipt copies");
    }
    parts.join(", ")
}
