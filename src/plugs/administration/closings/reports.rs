//! The closings report: the Z history (day, month and year closings) with their signed figures.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::FutureExt;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::report::ClosingReport;
use crate::core::http::ApiError;
use crate::core::reports::{
    Cell, Column, ColumnKind, Filters, Param, RUN as REPORTS_READ, RefKind, Report,
};
use crate::core::state::AppState;

pub const REPORTS: &[Report] = &[Report {
    id: "management.closings",
    title: "Closings (Z history)",
    description: "The day, month and year closings whose business date falls in the period, with the figures they signed.",
    permissions: &[REPORTS_READ, super::READ],
    params: &[Param::Period, Param::Branch],
    columns: &[
        Column::new("seq", "No.", ColumnKind::Integer),
        Column::new("kind", "Kind", ColumnKind::Text),
        Column::new("business_date", "Date", ColumnKind::Date),
        Column::new("branch", "Branch", ColumnKind::Text),
        Column::new("sales", "Sales", ColumnKind::Integer),
        Column::new("sales_total", "Sales total", ColumnKind::Money),
        Column::new("corrections_total", "Returns+voids", ColumnKind::Money),
        Column::new("net", "Net", ColumnKind::Money),
        Column::new("tax", "Tax", ColumnKind::Money),
        Column::new("total", "Total", ColumnKind::Money),
        Column::new("cash_variance", "Cash variance", ColumnKind::Money),
        Column::new("created_at", "Closed", ColumnKind::Timestamp),
        Column::new("created_by", "By", ColumnKind::Ref(RefKind::User)),
    ],
    chart: None,
    run: |state, f| closings(state, f).boxed(),
}];

fn amount(text: &str) -> Cell {
    text.parse::<Decimal>().map_or(Cell::Null, Cell::Dec)
}

async fn closings(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let rows: Vec<(i64, String, NaiveDate, String, DateTime<Utc>, Uuid)> = sqlx::query_as(
        "SELECT seq, kind, business_date, signed_message, created_at, created_by FROM closings \
          WHERE business_date BETWEEN $1 AND $2 AND ($3::uuid IS NULL OR branch_id = $3) ORDER BY seq",
    )
    .bind(f.from)
    .bind(f.to)
    .bind(f.branch)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for (seq, kind, date, message, at, by) in rows {
        let report: ClosingReport = match serde_json::from_str(&message) {
            Ok(report) => report,
            Err(e) => {
                // Listed, marked, with nothing made up; `plugpos closing verify` says more.
                tracing::error!(seq, error = %e, "a closing's signed report cannot be read");
                let mut row = vec![Cell::Int(seq), Cell::Text(kind), Cell::Date(date)];
                row.push(Cell::Text(
                    "(unreadable: run plugpos closing verify)".to_owned(),
                ));
                row.extend(std::iter::repeat_n(Cell::Null, 7));
                row.extend([Cell::Time(at), Cell::Ref(by)]);
                out.push(row);
                continue;
            }
        };
        let t = &report.figures.totals;
        let corrections = t.returns.total.parse::<Decimal>().unwrap_or_default()
            + t.voids.total.parse::<Decimal>().unwrap_or_default();
        out.push(vec![
            Cell::Int(seq),
            Cell::Text(kind),
            Cell::Date(date),
            Cell::Text(report.branch.clone()),
            Cell::Int(t.sales.count),
            amount(&t.sales.total),
            Cell::Dec(corrections),
            amount(&t.net.net),
            amount(&t.net.tax),
            amount(&t.net.total),
            amount(&report.figures.cash.variance),
            Cell::Time(at),
            Cell::Ref(by),
        ]);
    }
    Ok(out)
}
