//! Running the rules: `flags.review` (one cashier's business day, queued after each return,
//! void, discounted sale and no-sale) and `flags.sweep` (every active cashier's current and
//! previous business day, hourly). Each new hit is a flag, an audit record and a security event.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use super::rules::{self, Day, Thresholds};
use super::{MODULE, settings};
use crate::core::audit::{Actor, AuditedTx, Change};
use crate::core::jobs::JobKind;
use crate::core::jobs::runner::JobContext;
use crate::core::security::events::{self, EventKind, Origin, SecurityEvent};
use crate::core::settings::Business;
use crate::core::state::AppState;
use crate::plugs::administration::api::closings;
use crate::plugs::operations::api::{cash, returns, sales};

/// The hourly sweep.
pub const SWEEP: JobKind = JobKind {
    name: "flags.sweep",
    max_attempts: 1,
    description: "Look for suspicious patterns in every active cashier's business day",
    retryable: true,
};

fn thresholds(business: &Business) -> Thresholds {
    let percent = |key, default| Decimal::from(business.integer(key, default));
    Thresholds {
        max_corrections: business.integer(settings::MAX_CORRECTIONS, 5),
        max_corrections_percent: percent(settings::MAX_CORRECTIONS_PERCENT, 20),
        discount_percent: percent(settings::DISCOUNT_PERCENT, 30),
        hours: rules::parse_hours(business.text(settings::OPENING_HOURS, "off"))
            .ok()
            .flatten(),
        void_minutes: business.integer(settings::VOID_MINUTES, 10),
    }
}

/// Runs the rules over `user`'s business day `date`; answers the new flags.
pub async fn review(state: &AppState, user: Uuid, date: NaiveDate) -> anyhow::Result<Vec<Uuid>> {
    let mut conn = state.pool().acquire().await?;
    let Some(business) = Business::load(&mut conn).await? else {
        return Ok(Vec::new());
    };
    let span = closings::business_day(&business, date);
    let day = Day {
        sales: sales::sales_of(&mut conn, user, span.start, span.end).await?,
        corrections: returns::corrections_of(&mut conn, user, span.start, span.end).await?,
        no_sales: cash::no_sales_of(&mut conn, user, span.start, span.end).await?,
    };
    drop(conn);
    let hits = rules::hits(&day, &thresholds(&business), business.timezone);
    if hits.is_empty() {
        return Ok(Vec::new());
    }
    let now = state.clock().now();
    let mut tx = AuditedTx::begin(state.pool(), Actor::system("flags"), now).await?;
    let mut raised = Vec::new();
    for hit in &hits {
        let id = super::store::raise(
            &mut tx,
            hit.rule,
            user,
            date,
            &hit.key,
            &hit.details,
            &hit.documents,
            now,
        )
        .await?;
        let Some(id) = id else { continue };
        raised.push(id);
        tx.record(Change::new(MODULE, "flag", id, "flag.raise").after(json!({
            "rule": hit.rule, "user_id": user, "business_date": date, "details": hit.details,
            "document_ids": hit.documents,
        })))
        .await?;
        events::record(
            &mut tx,
            SecurityEvent {
                kind: EventKind::SuspiciousActivity,
                user_id: Some(user),
                username: None,
                origin: &Origin::default(),
                details: json!({"flag_id": id, "rule": hit.rule, "business_date": date, "details": hit.details}),
            },
        )
        .await?;
    }
    if raised.is_empty() {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(raised)
}

/// `flags.review`: `{"user_id", "at"}`.
pub async fn review_job(ctx: JobContext) -> anyhow::Result<Value> {
    let user: Uuid = serde_json::from_value(ctx.job.payload["user_id"].clone())?;
    let at: DateTime<Utc> = serde_json::from_value(ctx.job.payload["at"].clone())?;
    let mut conn = ctx.state.pool().acquire().await?;
    let Some(business) = Business::load(&mut conn).await? else {
        return Ok(json!({"flags": 0}));
    };
    drop(conn);
    let date = closings::business_date(&business, at);
    let raised = review(&ctx.state, user, date).await?;
    Ok(json!({"business_date": date, "flags": raised}))
}

/// `flags.sweep`: everyone who sold, gave back, opened a session or moved cash in the current or
/// previous business day.
pub async fn sweep_job(ctx: JobContext) -> anyhow::Result<Value> {
    let state = &ctx.state;
    let mut conn = state.pool().acquire().await?;
    let Some(business) = Business::load(&mut conn).await? else {
        return Ok(json!({"flags": 0}));
    };
    let today = closings::business_date(&business, state.clock().now());
    let mut raised = 0;
    for date in [today - Duration::days(1), today] {
        let span = closings::business_day(&business, date);
        let mut users = cash::active_users(&mut conn, span.start, span.end).await?;
        users.extend(returns::active_users(&mut conn, span.start, span.end).await?);
        // Also who sold into someone else's session (a manager on a cashier's till).
        users.extend(sales::active_sellers(&mut conn, span.start, span.end).await?);
        users.sort_unstable();
        users.dedup();
        for user in users {
            raised += review(state, user, date).await?.len();
        }
    }
    Ok(json!({"flags": raised}))
}
