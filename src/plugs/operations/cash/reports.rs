//! The cash sessions report (with their variances) and the open-sessions KPI.

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::core::http::ApiError;
use crate::core::reports::{
    Cell, Column, ColumnKind, DASHBOARD, Filters, Kpi, Param, RUN as REPORTS_READ, RefKind, Report,
};
use crate::core::state::AppState;

pub const REPORTS: &[Report] = &[Report {
    id: "management.cash_sessions",
    title: "Cash sessions with variances",
    description: "The cash sessions opened in the period: who opened and closed them, the float, the cash expected and counted, and the variance with its reason.",
    permissions: &[REPORTS_READ, super::REPORT_ANY],
    params: &[
        Param::Period,
        Param::Branch,
        Param::Register,
        Param::Cashier,
    ],
    columns: &[
        Column::new("register", "Register", ColumnKind::Ref(RefKind::Register)),
        Column::new("opened_by", "Opened by", ColumnKind::Ref(RefKind::User)),
        Column::new("opened_at", "Opened", ColumnKind::Timestamp),
        Column::new("closed_at", "Closed", ColumnKind::Timestamp),
        Column::new("opening_float", "Float", ColumnKind::Money),
        Column::new("expected", "Expected", ColumnKind::Money).summed(),
        Column::new("counted", "Counted", ColumnKind::Money).summed(),
        Column::new("variance", "Variance", ColumnKind::Money).summed(),
        Column::new("variance_reason", "Reason", ColumnKind::Text),
    ],
    chart: None,
    run: |state, f| sessions(state, f).boxed(),
}];

type Row = (
    Uuid,
    Uuid,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Decimal,
    Option<Decimal>,
    Option<Decimal>,
    Option<Decimal>,
    Option<String>,
);

async fn sessions(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT register_id, opened_by, opened_at, closed_at, opening_float, expected_cash, counted_cash, variance, \
                variance_reason \
           FROM cash_sessions WHERE opened_at >= $1 AND opened_at < $2 \
            AND ($3::uuid[] IS NULL OR register_id = ANY($3)) \
            AND ($4::uuid IS NULL OR opened_by = $4 OR closed_by = $4) \
          ORDER BY opened_at, id",
    )
    .bind(f.start)
    .bind(f.end)
    .bind(&f.registers)
    .bind(f.cashier)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(register, by, opened, closed, float, expected, counted, variance, reason)| {
                vec![
                    Cell::Ref(register),
                    Cell::Ref(by),
                    Cell::Time(opened),
                    closed.map_or(Cell::Null, Cell::Time),
                    Cell::Dec(float),
                    Cell::from(expected),
                    Cell::from(counted),
                    Cell::from(variance),
                    reason.map_or(Cell::Null, Cell::Text),
                ]
            },
        )
        .collect())
}

pub const KPIS: &[Kpi] = &[Kpi {
    id: "cash.open_sessions",
    title: "Open cash sessions",
    unit: "count",
    permission: DASHBOARD,
    refresh_secs: 60,
    changed_by: &["cash"],
    run: |state, _| open_sessions(state).boxed(),
}];

async fn open_sessions(state: &AppState) -> Result<Value, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM cash_sessions WHERE status = 'open'")
        .fetch_one(&mut *conn)
        .await?;
    Ok(json!(n))
}
