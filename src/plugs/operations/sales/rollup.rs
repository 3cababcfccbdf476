//! The report rollups: per business day (and month) totals of the sales, which reports read
//! instead of the lines (`migrations/0034_report_rollups.sql`).
//!
//! Every sale is queued by the statement that records it (`report_queue`). [`drain`] takes
//! queued sales in batches and adds each batch to the rollups in the transaction that deletes it
//! from the queue: a sale is counted once, and only after it committed, whatever order sales
//! commit in. One drain runs at a time (a transaction-level advisory lock). A background task
//! drains every ten seconds; reports and KPIs drain before they read, so they see every sale committed
//! before the request.
//!
//! Business days depend on the business timezone and `closing.day_starts_at`: the rollups
//! remember the pair they were built with and are rebuilt when either changes. [`check`]
//! recomputes the totals of a period from the lines and names the days that differ; [`repair`]
//! builds those days again (the nightly job `reports.rollup_check` does both for the last 35 days,
//! `plugpos doctor` checks them all).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::core::settings::Business;
use crate::core::state::AppState;

/// Sales rolled up per transaction.
const BATCH: i64 = 50_000;
/// The advisory lock that serialises drains (any constant the other modules do not use).
const LOCK: i64 = 0x7270_726f_6c6c_7570;
/// `closing.day_starts_at` (administration.closings' setting, read through the business).
const DAY_STARTS_AT: &str = "closing.day_starts_at";

/// The business timezone and day start, as the rollups' SQL takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Days {
    pub timezone: String,
    /// `HH:MM`.
    pub day_start: String,
}

impl Days {
    /// The business date of `at`, as the rollups count it (the local time less the day start).
    pub fn date_of(&self, business: &Business, at: chrono::DateTime<chrono::Utc>) -> NaiveDate {
        let start = chrono::NaiveTime::parse_from_str(&self.day_start, "%H:%M").unwrap_or_default();
        let local = at.with_timezone(&business.timezone).naive_local();
        (local - start.signed_duration_since(chrono::NaiveTime::MIN)).date()
    }

    pub fn of(business: &Business) -> Days {
        Days {
            timezone: business.timezone.name().to_owned(),
            day_start: business.text(DAY_STARTS_AT, "00:00").to_owned(),
        }
    }
}

/// Adds `sales` (ids) to the rollups, in the caller's transaction. `$1` the ids, `$2` the
/// timezone, `$3` the day start.
const ADD: &str = "WITH s AS ( \
       SELECT s.id, s.register_id, s.cashier_id, s.customer_id, s.prices_include_tax, s.net, s.tax, s.total, \
              s.change_due, s.discount_total, s.payment_methods, s.payment_amounts, s.tax_rates, s.tax_nets, \
              s.tax_amounts, s.tax_grosses, s.discount_detail, \
              ((s.created_at AT TIME ZONE $2) - $3::interval)::date AS day, \
              extract(hour FROM s.created_at AT TIME ZONE $2)::smallint AS hour \
         FROM sales s WHERE s.id = ANY($1::uuid[])), \
     l AS (SELECT s.id AS sale_id, s.day, s.register_id, l.product_id, l.quantity, l.discount, l.unit_cost, \
              CASE WHEN s.prices_include_tax THEN l.total ELSE l.total + round(l.total * l.tax_rate, 4) END AS gross, \
              CASE WHEN s.prices_include_tax THEN round(l.total / (1 + l.tax_rate), 4) ELSE l.total END AS net \
         FROM s JOIN sale_lines l ON l.sale_id = s.id), \
     per_sale AS (SELECT sale_id, sum(quantity) AS items, coalesce(sum(quantity * unit_cost), 0) AS cost, \
              count(*) FILTER (WHERE unit_cost IS NULL) AS cost_missing FROM l GROUP BY sale_id), \
     hourly AS (INSERT INTO report_sales_hourly AS r (day, hour, register_id, cashier_id, sales, items, net, tax, gross, \
              discount, cost, cost_missing) \
         SELECT s.day, s.hour, s.register_id, s.cashier_id, count(*), coalesce(sum(p.items), 0), sum(s.net), sum(s.tax), \
              sum(s.total), sum(s.discount_total), coalesce(sum(p.cost), 0), coalesce(sum(p.cost_missing), 0) \
         FROM s LEFT JOIN per_sale p ON p.sale_id = s.id GROUP BY 1, 2, 3, 4 \
         ON CONFLICT (day, hour, register_id, cashier_id) DO UPDATE SET sales = r.sales + EXCLUDED.sales, \
              items = r.items + EXCLUDED.items, net = r.net + EXCLUDED.net, tax = r.tax + EXCLUDED.tax, \
              gross = r.gross + EXCLUDED.gross, discount = r.discount + EXCLUDED.discount, \
              cost = r.cost + EXCLUDED.cost, cost_missing = r.cost_missing + EXCLUDED.cost_missing), \
     pd AS (SELECT day, register_id, product_id, count(*) AS lines, sum(quantity) AS quantity, sum(net) AS net, \
              sum(gross) AS gross, sum(discount) AS discount, coalesce(sum(quantity * unit_cost), 0) AS cost, \
              count(*) FILTER (WHERE unit_cost IS NULL) AS cost_missing FROM l GROUP BY 1, 2, 3), \
     daily AS (INSERT INTO report_products_daily AS r (day, register_id, product_id, lines, quantity, net, gross, \
              discount, cost, cost_missing) \
         SELECT * FROM pd \
         ON CONFLICT (day, register_id, product_id) DO UPDATE SET lines = r.lines + EXCLUDED.lines, \
              quantity = r.quantity + EXCLUDED.quantity, net = r.net + EXCLUDED.net, gross = r.gross + EXCLUDED.gross, \
              discount = r.discount + EXCLUDED.discount, cost = r.cost + EXCLUDED.cost, \
              cost_missing = r.cost_missing + EXCLUDED.cost_missing), \
     monthly AS (INSERT INTO report_products_monthly AS r (month, register_id, product_id, lines, quantity, net, gross, \
              discount, cost, cost_missing) \
         SELECT date_trunc('month', day)::date, register_id, product_id, sum(lines), sum(quantity), sum(net), sum(gross), \
              sum(discount), sum(cost), sum(cost_missing) FROM pd GROUP BY 1, 2, 3 \
         ON CONFLICT (month, register_id, product_id) DO UPDATE SET lines = r.lines + EXCLUDED.lines, \
              quantity = r.quantity + EXCLUDED.quantity, net = r.net + EXCLUDED.net, gross = r.gross + EXCLUDED.gross, \
              discount = r.discount + EXCLUDED.discount, cost = r.cost + EXCLUDED.cost, \
              cost_missing = r.cost_missing + EXCLUDED.cost_missing), \
     pay AS (SELECT s.day, s.register_id, s.cashier_id, p.method, count(*) AS n, \
              sum(p.amount) - CASE WHEN p.method = 'cash' THEN s.change_due ELSE 0 END AS amount \
         FROM s, unnest(s.payment_methods, s.payment_amounts) AS p(method, amount) \
         GROUP BY s.id, s.day, s.register_id, s.cashier_id, p.method, s.change_due), \
     payments AS (INSERT INTO report_payments_daily AS r (day, register_id, cashier_id, method, payments, amount) \
         SELECT day, register_id, cashier_id, method, sum(n), sum(amount) FROM pay GROUP BY 1, 2, 3, 4 \
         ON CONFLICT (day, register_id, cashier_id, method) DO UPDATE SET payments = r.payments + EXCLUDED.payments, \
              amount = r.amount + EXCLUDED.amount), \
     taxes AS (INSERT INTO report_taxes_daily AS r (day, register_id, rate, net, tax, gross) \
         SELECT s.day, s.register_id, t.rate, sum(t.net), sum(t.tax), sum(t.gross) \
         FROM s, unnest(s.tax_rates, s.tax_nets, s.tax_amounts, s.tax_grosses) AS t(rate, net, tax, gross) \
         GROUP BY 1, 2, 3 \
         ON CONFLICT (day, register_id, rate) DO UPDATE SET net = r.net + EXCLUDED.net, tax = r.tax + EXCLUDED.tax, \
              gross = r.gross + EXCLUDED.gross), \
     disc AS (SELECT s.day, s.register_id, s.cashier_id, s.discount_detail #>> '{sale,reason_code}' AS reason, \
              (s.discount_detail #>> '{sale,amount}')::numeric AS amount \
         FROM s WHERE s.discount_detail #>> '{sale,reason_code}' IS NOT NULL \
       UNION ALL \
       SELECT s.day, s.register_id, s.cashier_id, d.value #>> '{own,reason_code}', (d.value #>> '{own,amount}')::numeric \
         FROM s, jsonb_each(coalesce(s.discount_detail -> 'lines', '{}'::jsonb)) AS d \
         WHERE d.value #>> '{own,reason_code}' IS NOT NULL), \
     discounts AS (INSERT INTO report_discounts_daily AS r (day, register_id, cashier_id, reason_code, discounts, amount) \
         SELECT day, register_id, cashier_id, reason, count(*), sum(amount) FROM disc GROUP BY 1, 2, 3, 4 \
         ON CONFLICT (day, register_id, cashier_id, reason_code) DO UPDATE SET discounts = r.discounts + EXCLUDED.discounts, \
              amount = r.amount + EXCLUDED.amount), \
     customers AS (INSERT INTO report_customers_daily AS r (day, register_id, customer_id, sales, gross) \
         SELECT day, register_id, customer_id, count(*), sum(total) FROM s WHERE customer_id IS NOT NULL GROUP BY 1, 2, 3 \
         ON CONFLICT (day, register_id, customer_id) DO UPDATE SET sales = r.sales + EXCLUDED.sales, \
              gross = r.gross + EXCLUDED.gross) \
     SELECT count(*) FROM s";

/// The rollup tables, each with its date column.
const TABLES: &[(&str, &str)] = &[
    ("report_sales_hourly", "day"),
    ("report_products_daily", "day"),
    ("report_products_monthly", "month"),
    ("report_payments_daily", "day"),
    ("report_taxes_daily", "day"),
    ("report_discounts_daily", "day"),
    ("report_customers_daily", "day"),
];

/// This server's drains take turns here first, so that those waiting hold no connection (a
/// rebuild can take minutes; waiting requests must not empty the pool the sales need).
#[derive(Default)]
struct Turns(tokio::sync::Mutex<()>);

/// Rolls up every queued sale; answers how many. Before setup, nothing.
pub async fn drain(state: &AppState) -> Result<u64, sqlx::Error> {
    let turns = state.service(|_| Turns::default());
    let _turn = turns.0.lock().await;
    drain_with(state.pool()).await
}

/// [`drain`], on `pool` (for a caller without the state). The business days are read inside
/// the lock, so a drain started before a change of the timezone or day start cannot undo the
/// rebuild that change caused.
pub async fn drain_with(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK)
            .execute(&mut *tx)
            .await?;
        let Some(business) = Business::load(&mut tx).await? else {
            return Ok(total);
        };
        let days = &Days::of(&business);
        rebuild_if_days_moved(&mut tx, days).await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "DELETE FROM report_queue WHERE ctid = ANY(ARRAY(SELECT ctid FROM report_queue LIMIT $1)) \
             RETURNING sale_id",
        )
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            tx.commit().await?;
            return Ok(total);
        }
        add(&mut tx, &ids, days).await?;
        tx.commit().await?;
        total += ids.len() as u64;
        if (ids.len() as i64) < BATCH {
            return Ok(total);
        }
    }
}

async fn add(conn: &mut PgConnection, ids: &[Uuid], days: &Days) -> Result<(), sqlx::Error> {
    sqlx::query(ADD)
        .bind(ids)
        .bind(&days.timezone)
        .bind(&days.day_start)
        .execute(conn)
        .await
        .map(drop)
}

/// The business days the rollups were built for (none yet: they are built at the next drain).
async fn built_for(conn: &mut PgConnection) -> Result<Option<Days>, sqlx::Error> {
    let built: Option<(String, String)> =
        sqlx::query_as("SELECT timezone, day_start FROM report_rollup_state")
            .fetch_optional(conn)
            .await?;
    Ok(built.map(|(timezone, day_start)| Days {
        timezone,
        day_start,
    }))
}

/// When the rollups were built for other business days, or not at all (a new installation, an
/// upgrade, or an admin deleted `report_rollup_state` to have them built again), empties them
/// and queues every sale.
async fn rebuild_if_days_moved(conn: &mut PgConnection, days: &Days) -> Result<(), sqlx::Error> {
    let built = built_for(&mut *conn).await?;
    if built.as_ref() == Some(days) {
        return Ok(());
    }
    tracing::warn!(
        timezone = %days.timezone,
        day_start = %days.day_start,
        "the report rollups are built (again) from every sale"
    );
    for (table, _) in TABLES {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&mut *conn)
            .await?;
    }
    // One statement, one snapshot: a sale committed after it stays queued once, by its own
    // statement; one committed before is queued once, here.
    sqlx::query(
        "WITH emptied AS (DELETE FROM report_queue) INSERT INTO report_queue (sale_id) SELECT id FROM sales",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO report_rollup_state (singleton, timezone, day_start, rebuilt_at) VALUES (true, $1, $2, now()) \
         ON CONFLICT (singleton) DO UPDATE SET timezone = $1, day_start = $2, rebuilt_at = now()",
    )
    .bind(&days.timezone)
    .bind(&days.day_start)
    .execute(conn)
    .await
    .map(drop)
}

/// Per business day of `[from, to]`, each rollup's totals as the lines give them, against the
/// rollups: one query per rollup, each answering the days that differ.
const CHECKS: &[(&str, &str)] = &[
    (
        "sales per hour, register and cashier",
        "WITH s AS (SELECT s.*, ((s.created_at AT TIME ZONE $3) - $4::interval)::date AS day, \
                extract(hour FROM s.created_at AT TIME ZONE $3)::smallint AS hour \
              FROM sales s WHERE s.created_at >= (($1::date + $4::interval) AT TIME ZONE $3) - interval '1 day' \
                AND s.created_at < (($2::date + $4::interval) AT TIME ZONE $3) + interval '2 days' \
                AND NOT EXISTS (SELECT 1 FROM report_queue q WHERE q.sale_id = s.id)), \
         raw AS (SELECT s.day, s.hour, s.register_id, s.cashier_id, count(*) AS sales, sum(s.net) AS net, sum(s.tax) AS tax, \
                sum(s.total) AS gross, sum(s.discount_total) AS discount, \
                (SELECT coalesce(sum(l.quantity), 0) FROM sale_lines l WHERE l.sale_id = ANY(array_agg(s.id))) AS items \
              FROM s WHERE s.day BETWEEN $1 AND $2 GROUP BY 1, 2, 3, 4), \
         rolled AS (SELECT day, hour, register_id, cashier_id, sales, net, tax, gross, discount, items \
              FROM report_sales_hourly WHERE day BETWEEN $1 AND $2) \
         SELECT DISTINCT coalesce(raw.day, rolled.day) FROM raw FULL JOIN rolled USING (day, hour, register_id, cashier_id) \
          WHERE (raw.sales, raw.net, raw.tax, raw.gross, raw.discount, raw.items) IS DISTINCT FROM \
                (rolled.sales, rolled.net, rolled.tax, rolled.gross, rolled.discount, rolled.items)",
    ),
    (
        "products per day and register",
        "WITH s AS (SELECT s.id, s.register_id, s.prices_include_tax, ((s.created_at AT TIME ZONE $3) - $4::interval)::date AS day \
              FROM sales s WHERE s.created_at >= (($1::date + $4::interval) AT TIME ZONE $3) - interval '1 day' \
                AND s.created_at < (($2::date + $4::interval) AT TIME ZONE $3) + interval '2 days' \
                AND NOT EXISTS (SELECT 1 FROM report_queue q WHERE q.sale_id = s.id)), \
         raw AS (SELECT s.day, s.register_id, l.product_id, count(*) AS lines, sum(l.quantity) AS quantity, \
                sum(CASE WHEN s.prices_include_tax THEN l.total ELSE l.total + round(l.total * l.tax_rate, 4) END) AS gross \
              FROM s JOIN sale_lines l ON l.sale_id = s.id WHERE s.day BETWEEN $1 AND $2 GROUP BY 1, 2, 3), \
         rolled AS (SELECT day, register_id, product_id, lines, quantity, gross FROM report_products_daily \
              WHERE day BETWEEN $1 AND $2) \
         SELECT DISTINCT coalesce(raw.day, rolled.day) FROM raw FULL JOIN rolled USING (day, register_id, product_id) \
          WHERE (raw.lines, raw.quantity, raw.gross) IS DISTINCT FROM (rolled.lines, rolled.quantity, rolled.gross)",
    ),
    (
        "products per month (against the days)",
        "WITH days AS (SELECT date_trunc('month', day)::date AS month, register_id, product_id, sum(lines) AS lines, \
                sum(quantity) AS quantity, sum(net) AS net, sum(gross) AS gross, sum(cost) AS cost \
              FROM report_products_daily WHERE day BETWEEN date_trunc('month', $1::date) \
                AND (date_trunc('month', $2::date) + interval '1 month - 1 day')::date GROUP BY 1, 2, 3), \
         months AS (SELECT month, register_id, product_id, lines, quantity, net, gross, cost FROM report_products_monthly \
              WHERE month BETWEEN date_trunc('month', $1::date) AND date_trunc('month', $2::date)) \
         SELECT DISTINCT greatest(coalesce(days.month, months.month), $1::date) \
           FROM days FULL JOIN months USING (month, register_id, product_id) \
          WHERE (days.lines, days.quantity, days.net, days.gross, days.cost) IS DISTINCT FROM \
                (months.lines, months.quantity, months.net, months.gross, months.cost) AND $3::text = $3 AND $4::text = $4",
    ),
    (
        "tax buckets per day and register",
        "WITH s AS (SELECT s.*, ((s.created_at AT TIME ZONE $3) - $4::interval)::date AS day \
              FROM sales s WHERE s.created_at >= (($1::date + $4::interval) AT TIME ZONE $3) - interval '1 day' \
                AND s.created_at < (($2::date + $4::interval) AT TIME ZONE $3) + interval '2 days' \
                AND NOT EXISTS (SELECT 1 FROM report_queue q WHERE q.sale_id = s.id)), \
         raw AS (SELECT s.day, s.register_id, t.rate, sum(t.net) AS net, sum(t.tax) AS tax, sum(t.gross) AS gross \
              FROM s, unnest(s.tax_rates, s.tax_nets, s.tax_amounts, s.tax_grosses) AS t(rate, net, tax, gross) \
              WHERE s.day BETWEEN $1 AND $2 GROUP BY 1, 2, 3), \
         rolled AS (SELECT day, register_id, rate, net, tax, gross FROM report_taxes_daily WHERE day BETWEEN $1 AND $2) \
         SELECT DISTINCT coalesce(raw.day, rolled.day) FROM raw FULL JOIN rolled USING (day, register_id, rate) \
          WHERE (raw.net, raw.tax, raw.gross) IS DISTINCT FROM (rolled.net, rolled.tax, rolled.gross)",
    ),
];

/// The business days of `[from, to]` whose rollups differ from the lines, each with what
/// differs, for the business days the rollups were built for (none yet: nothing). Reads only:
/// a sale still queued is left out of both sides.
pub async fn check(
    pool: &PgPool,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(NaiveDate, &'static str)>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let Some(days) = built_for(&mut conn).await? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for (what, sql) in CHECKS {
        let differ: Vec<NaiveDate> = sqlx::query_scalar(*sql)
            .bind(from)
            .bind(to)
            .bind(&days.timezone)
            .bind(&days.day_start)
            .fetch_all(&mut *conn)
            .await?;
        found.extend(differ.into_iter().map(|d| (d, *what)));
    }
    found.sort();
    Ok(found)
}

/// Builds the rollups of business days `dates` again from the lines (and the months they fall
/// in from their days), in one transaction, for the business days they were built for.
pub async fn repair(pool: &PgPool, dates: &[NaiveDate]) -> Result<(), sqlx::Error> {
    let dates: BTreeSet<NaiveDate> = dates.iter().copied().collect();
    let dates: Vec<NaiveDate> = dates.into_iter().collect();
    let months: BTreeSet<NaiveDate> = dates
        .iter()
        .filter_map(|d| d.with_day(1))
        .collect::<BTreeSet<_>>();
    let months: Vec<NaiveDate> = months.into_iter().collect();
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK)
        .execute(&mut *tx)
        .await?;
    let Some(days) = built_for(&mut tx).await? else {
        return Ok(());
    };
    let days = &days;
    for (table, column) in TABLES {
        let set = if *column == "month" { &months } else { &dates };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE {column} = ANY($1)"
        )))
        .bind(set)
        .execute(&mut *tx)
        .await?;
    }
    // The sales of those days, except those still queued (the next drain adds them).
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT s.id FROM sales s WHERE ((s.created_at AT TIME ZONE $2) - $3::interval)::date = ANY($1) \
           AND s.created_at >= ((($1::date[])[1] + $3::interval) AT TIME ZONE $2) - interval '1 day' \
           AND NOT EXISTS (SELECT 1 FROM report_queue q WHERE q.sale_id = s.id)",
    )
    .bind(&dates)
    .bind(&days.timezone)
    .bind(&days.day_start)
    .fetch_all(&mut *tx)
    .await?;
    for chunk in ids.chunks(BATCH as usize) {
        add(&mut tx, chunk, days).await?;
    }
    // Each repaired month again from its days (the additions above added to it twice).
    sqlx::query("DELETE FROM report_products_monthly WHERE month = ANY($1)")
        .bind(&months)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO report_products_monthly (month, register_id, product_id, lines, quantity, net, gross, discount, cost, cost_missing) \
         SELECT date_trunc('month', day)::date, register_id, product_id, sum(lines), sum(quantity), sum(net), sum(gross), \
                sum(discount), sum(cost), sum(cost_missing) \
           FROM report_products_daily WHERE date_trunc('month', day)::date = ANY($1) GROUP BY 1, 2, 3",
    )
    .bind(&months)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// How often the background drain runs. Readers drain before they read, so this bounds only the
/// work a report may find queued; longer batches merge more rows per rollup key (cheaper per
/// sale under load, docs/PERFORMANCE.md).
const DRAIN_EVERY: Duration = Duration::from_secs(10);

/// The background drain: every [`DRAIN_EVERY`], until the state is dropped.
pub struct Worker {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the background drain of `state` (once; outside a runtime, nothing).
pub fn start(state: &AppState) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    state.service(|state| {
        let weak = state.downgrade();
        Worker {
            task: tokio::spawn(async move {
                let mut tick = tokio::time::interval(DRAIN_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(state) = weak.upgrade() else {
                        return;
                    };
                    if let Err(e) = drain(&state).await {
                        tracing::warn!(error = %e, "report rollups: cannot roll up queued sales");
                    }
                }
            }),
        }
    });
}

/// The nightly check of the last [`CHECKED_DAYS`] business days, repairing what differs.
pub const CHECK_JOB: crate::core::jobs::JobKind = crate::core::jobs::JobKind {
    name: "reports.rollup_check",
    max_attempts: 3,
    description: "Checks the report rollups of the last 35 business days against the sale lines and rebuilds the days that differ",
    retryable: true,
};

/// How far back the nightly check looks.
const CHECKED_DAYS: i64 = 35;

pub async fn check_job(
    ctx: crate::core::jobs::runner::JobContext,
) -> anyhow::Result<serde_json::Value> {
    let state = &ctx.state;
    let Some(business) = Business::cached(state).await? else {
        return Ok(serde_json::json!({"checked_days": 0}));
    };
    drain(state).await?;
    let today = Days::of(&business).date_of(&business, state.clock().now());
    let from = today - chrono::Duration::days(CHECKED_DAYS);
    let found = check(state.pool(), from, today).await?;
    let differing: Vec<NaiveDate> = found.iter().map(|(d, _)| *d).collect();
    if !differing.is_empty() {
        tracing::warn!(
            days = ?differing,
            "report rollups differed from the sale lines; those days are built again"
        );
        repair(state.pool(), &differing).await?;
    }
    Ok(serde_json::json!({
        "checked_from": from,
        "checked_to": today,
        "repaired_days": differing,
    }))
}

/// `plugpos doctor`: every business day with sales has rollups equal to its lines (read-only: a
/// difference is named; the nightly job repairs the last 35 days).
pub async fn doctor_check(pool: &PgPool) -> anyhow::Result<crate::core::modules::Verified> {
    let nothing = || crate::core::modules::Verified {
        ok: true,
        checked: 0,
        problems: Vec::new(),
    };
    let mut conn = pool.acquire().await?;
    let Some(days) = built_for(&mut conn).await? else {
        return Ok(nothing());
    };
    let range: (Option<NaiveDate>, Option<NaiveDate>) = sqlx::query_as(
        "SELECT ((min(created_at) AT TIME ZONE $1) - $2::interval)::date, \
                ((max(created_at) AT TIME ZONE $1) - $2::interval)::date FROM sales",
    )
    .bind(&days.timezone)
    .bind(&days.day_start)
    .fetch_one(&mut *conn)
    .await?;
    drop(conn);
    let (Some(from), Some(to)) = range else {
        return Ok(nothing());
    };
    let found = check(pool, from, to).await?;
    let checked = usize::try_from((to - from).num_days() + 1).unwrap_or(0);
    Ok(crate::core::modules::Verified {
        ok: found.is_empty(),
        checked,
        problems: found
            .iter()
            .map(|(day, what)| {
                format!(
                    "report rollups of {day} ({what}) differ from the sale lines; the nightly job `reports.rollup_check` \
                     rebuilds the last 35 days; to rebuild them all, `DELETE FROM report_rollup_state` (the server then \
                     rolls up every sale again)"
                )
            })
            .collect(),
    })
}
