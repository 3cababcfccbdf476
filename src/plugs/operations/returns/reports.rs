//! The returns' reports: returns and voids by reason and cashier, and the two reports that net
//! the sales against their corrections (the VAT return by tax rate, and payments by method), and
//! the returns-rate KPI. The sales' side comes from `operations::api::sales` (the rollups); the
//! returns are few enough to read from their table.

use std::collections::BTreeMap;

use futures_util::FutureExt;
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::core::http::ApiError;
use crate::core::reports::{
    Cell, Chart, ChartKind, Column, ColumnKind, Filters, Kpi, Param, RefKind, Report, Today,
};
use crate::core::state::AppState;
use crate::plugs::operations::api::sales::{
    DASHBOARD, READ as SALES_READ, REPORTS_READ, day_totals, payment_totals, tax_totals,
};

const PERIOD_WHERE: &str = "created_at >= $1 AND created_at < $2 AND ($3::uuid[] IS NULL OR register_id = ANY($3)) \
     AND ($4::uuid IS NULL OR cashier_id = $4)";

pub const REPORTS: &[Report] = &[
    Report {
        id: "management.returns_and_voids",
        title: "Returns and voids by reason and cashier",
        description: "Returns and voids per kind, reason and cashier: how many and what they gave back (`customer_id`: those naming the customer).",
        permissions: &[REPORTS_READ, super::READ],
        params: &[
            Param::Period,
            Param::Branch,
            Param::Register,
            Param::Cashier,
            Param::Customer,
        ],
        columns: &[
            Column::new("kind", "Kind", ColumnKind::Text),
            Column::new("reason_code", "Reason", ColumnKind::Text),
            Column::new("cashier", "Cashier", ColumnKind::Ref(RefKind::User)),
            Column::new("documents", "Documents", ColumnKind::Integer).summed(),
            Column::new("amount", "Amount", ColumnKind::Money).summed(),
        ],
        chart: None,
        run: |state, f| returns_and_voids(state, f).boxed(),
    },
    Report {
        id: "management.sales_by_tax_rate",
        title: "Sales by tax rate",
        description: "Per tax rate: the sales' net, tax and gross, the returns' and voids' (negative), and what remains (the VAT return).",
        permissions: &[REPORTS_READ, super::READ, SALES_READ],
        params: &[Param::Period, Param::Branch, Param::Register],
        columns: &[
            Column::new("rate", "Rate %", ColumnKind::Percent),
            Column::new("sales_net", "Sales net", ColumnKind::Money).summed(),
            Column::new("sales_tax", "Sales tax", ColumnKind::Money).summed(),
            Column::new("returns_net", "Returns net", ColumnKind::Money).summed(),
            Column::new("returns_tax", "Returns tax", ColumnKind::Money).summed(),
            Column::new("net", "Net", ColumnKind::Money).summed(),
            Column::new("tax", "Tax", ColumnKind::Money).summed(),
            Column::new("gross", "Gross", ColumnKind::Money).summed(),
        ],
        chart: Some(Chart {
            kind: ChartKind::Bars,
            label: "rate",
            value: "gross",
        }),
        run: |state, f| by_tax_rate(state, f).boxed(),
    },
    Report {
        id: "management.sales_by_payment_method",
        title: "Sales by payment method",
        description: "Per payment method: what sales took (cash less change), what returns and voids gave back, and the net.",
        permissions: &[REPORTS_READ, super::READ, SALES_READ],
        params: &[
            Param::Period,
            Param::Branch,
            Param::Register,
            Param::Cashier,
            Param::PaymentMethod,
        ],
        columns: &[
            Column::new("method", "Method", ColumnKind::Text),
            Column::new("payments", "Payments", ColumnKind::Integer).summed(),
            Column::new("received", "Received", ColumnKind::Money).summed(),
            Column::new("refunds", "Refunds", ColumnKind::Integer).summed(),
            Column::new("refunded", "Refunded", ColumnKind::Money).summed(),
            Column::new("net", "Net", ColumnKind::Money).summed(),
        ],
        chart: Some(Chart {
            kind: ChartKind::Bars,
            label: "method",
            value: "net",
        }),
        run: |state, f| by_payment_method(state, f).boxed(),
    },
];

async fn returns_and_voids(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let rows: Vec<(String, String, Uuid, i64, Decimal)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT kind, reason_code, cashier_id, count(*), -sum(total) FROM returns WHERE {PERIOD_WHERE} \
            AND ($5::uuid IS NULL OR customer_id = $5) \
          GROUP BY 1, 2, 3 ORDER BY 5 DESC, 1, 2, 3"
    )))
    .bind(f.start)
    .bind(f.end)
    .bind(&f.registers)
    .bind(f.cashier)
    .bind(f.customer)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(kind, reason, cashier, n, amount)| {
            vec![
                Cell::Text(kind),
                Cell::Text(reason),
                Cell::Ref(cashier),
                Cell::Int(n),
                Cell::Dec(amount),
            ]
        })
        .collect())
}

async fn by_tax_rate(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let sold = tax_totals(state, f).await?;
    let mut conn = state.pool().acquire().await?;
    let returned: Vec<(Decimal, Decimal, Decimal, Decimal)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT t.rate, sum(t.net), sum(t.tax), sum(t.gross) \
           FROM returns, unnest(tax_rates, tax_nets, tax_amounts, tax_grosses) AS t(rate, net, tax, gross) \
          WHERE {PERIOD_WHERE} GROUP BY 1"
    )))
    .bind(f.start)
    .bind(f.end)
    .bind(&f.registers)
    .bind(None::<Uuid>)
    .fetch_all(&mut *conn)
    .await?;
    // Per rate: sales (net, tax, gross), returns (net, tax, gross).
    let mut rates: BTreeMap<Decimal, [Decimal; 6]> = BTreeMap::new();
    for (rate, net, tax, gross) in sold {
        let r = rates.entry(rate.normalize()).or_default();
        r[0] += net;
        r[1] += tax;
        r[2] += gross;
    }
    for (rate, net, tax, gross) in returned {
        let r = rates.entry(rate.normalize()).or_default();
        r[3] += net;
        r[4] += tax;
        r[5] += gross;
    }
    Ok(rates
        .into_iter()
        .map(|(rate, [sn, st, sg, rn, rt, rg])| {
            vec![
                Cell::Dec(rate * Decimal::ONE_HUNDRED),
                Cell::Dec(sn),
                Cell::Dec(st),
                Cell::Dec(rn),
                Cell::Dec(rt),
                Cell::Dec(sn + rn),
                Cell::Dec(st + rt),
                Cell::Dec(sg + rg),
            ]
        })
        .collect())
}

async fn by_payment_method(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let taken = payment_totals(state, f).await?;
    let mut conn = state.pool().acquire().await?;
    let refunded: Vec<(String, i64, Decimal)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT m.method, count(*), sum(m.amount) \
           FROM returns, unnest(refund_methods, refund_amounts) AS m(method, amount) \
          WHERE {PERIOD_WHERE} GROUP BY 1"
    )))
    .bind(f.start)
    .bind(f.end)
    .bind(&f.registers)
    .bind(f.cashier)
    .fetch_all(&mut *conn)
    .await?;
    // Per method: payments, received, refunds, refunded.
    let mut methods: BTreeMap<String, (i64, Decimal, i64, Decimal)> = BTreeMap::new();
    for (method, n, amount) in taken {
        let m = methods.entry(method).or_default();
        m.0 += n;
        m.1 += amount;
    }
    for (method, n, amount) in refunded {
        let m = methods.entry(method).or_default();
        m.2 += n;
        m.3 += amount;
    }
    Ok(methods
        .into_iter()
        .filter(|(method, _)| f.method.as_ref().is_none_or(|m| m == method))
        .map(|(method, (payments, received, refunds, refunded))| {
            vec![
                Cell::Text(method),
                Cell::Int(payments),
                Cell::Dec(received),
                Cell::Int(refunds),
                Cell::Dec(refunded),
                Cell::Dec(received - refunded),
            ]
        })
        .collect())
}

pub const KPIS: &[Kpi] = &[Kpi {
    id: "returns.rate_today",
    title: "Returns and voids today, % of sales",
    unit: "percent",
    permission: DASHBOARD,
    refresh_secs: 60,
    changed_by: &["sales", "returns"],
    run: |state, t| returns_rate(state, t).boxed(),
}];

async fn returns_rate(state: &AppState, t: &Today) -> Result<Value, ApiError> {
    let (_, gross) = day_totals(state, t.date).await?;
    let mut conn = state.pool().acquire().await?;
    let returned: Decimal = sqlx::query_scalar(
        "SELECT coalesce(-sum(total), 0) FROM returns WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(t.start)
    .bind(t.end)
    .fetch_one(&mut *conn)
    .await?;
    if gross.is_zero() {
        return Ok(Value::Null);
    }
    let percent = (returned * Decimal::ONE_HUNDRED / gross)
        .round_dp_with_strategy(1, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    Ok(Value::String(percent.to_string()))
}
