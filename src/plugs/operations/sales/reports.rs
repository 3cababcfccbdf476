//! The sales' reports and KPIs, read from the rollups ([`super::rollup`]) after draining the
//! queue, so they count every sale committed before the request.
//!
//! Figures: a sale's `gross` is its total (what the customer owed before cash rounding), `net`
//! and `tax` its tax buckets'. Per product, a line's gross is what its customer paid for it, its
//! net the gross less its tax at its rate (rounded to 4 decimals per line); a line's cost is its
//! quantity times its product's cost price when it was sold, and the margin is the net less the
//! cost (lines sold without a known cost count in `lines_without_cost`).

use std::collections::HashMap;

use chrono::{Datelike, Duration, NaiveDate};
use futures_util::FutureExt;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::rollup;
use crate::core::http::ApiError;
use crate::core::reports::{
    Cell, Chart, ChartKind, Column, ColumnKind, Filters, Kpi, Param, RefKind, Report, Today,
};
use crate::core::state::AppState;
use crate::plugs::management::api::catalog::{self, COST_PRICE_READ};
use crate::plugs::management::api::{customers, stock};

pub use crate::core::reports::{DASHBOARD, RUN as REPORTS_READ};

const SALES_PARAMS: &[Param] = &[
    Param::Period,
    Param::Branch,
    Param::Register,
    Param::Cashier,
];
const PRODUCT_PARAMS: &[Param] = &[
    Param::Period,
    Param::Branch,
    Param::Register,
    Param::Category,
    Param::Product,
    Param::Limit,
];

/// The figures of every sales summary, after its key column.
macro_rules! summary_columns {
    ($key:expr) => {
        &[
            $key,
            Column::new("sales", "Sales", ColumnKind::Integer).summed(),
            Column::new("items", "Items", ColumnKind::Quantity).summed(),
            Column::new("net", "Net", ColumnKind::Money).summed(),
            Column::new("tax", "Tax", ColumnKind::Money).summed(),
            Column::new("gross", "Gross", ColumnKind::Money).summed(),
            Column::new("discounts", "Discounts", ColumnKind::Money).summed(),
            Column::new("average_basket", "Avg basket", ColumnKind::Money),
        ]
    };
}

/// A product report's figures (per product or category), after its key column.
macro_rules! product_columns {
    ($key:expr) => {
        &[
            $key,
            Column::new("quantity", "Quantity", ColumnKind::Quantity).summed(),
            Column::new("net", "Net", ColumnKind::Money).summed(),
            Column::new("gross", "Gross", ColumnKind::Money).summed(),
            Column::new("discounts", "Discounts", ColumnKind::Money).summed(),
        ]
    };
}

/// A margin report's figures, after its key column; cost and margin for readers of costs only.
macro_rules! margin_columns {
    ($key:expr) => {
        &[
            $key,
            Column::new("quantity", "Quantity", ColumnKind::Quantity).summed(),
            Column::new("net", "Net", ColumnKind::Money).summed(),
            Column::new("cost", "Cost", ColumnKind::Money)
                .summed()
                .needs(COST_PRICE_READ),
            Column::new("margin", "Margin", ColumnKind::Money)
                .summed()
                .needs(COST_PRICE_READ),
            Column::new("margin_percent", "Margin %", ColumnKind::Percent).needs(COST_PRICE_READ),
            Column::new("lines_without_cost", "No cost", ColumnKind::Integer)
                .summed()
                .needs(COST_PRICE_READ),
        ]
    };
}

const fn bars(label: &'static str, value: &'static str) -> Option<Chart> {
    Some(Chart {
        kind: ChartKind::Bars,
        label,
        value,
    })
}

pub const REPORTS: &[Report] = &[
    Report {
        id: "management.sales_by_day",
        title: "Sales by day",
        description: "Sales, items, net, tax, gross and discounts per business day (every day of the period).",
        permissions: &[REPORTS_READ, super::READ],
        params: SALES_PARAMS,
        columns: summary_columns!(Column::new("date", "Date", ColumnKind::Date)),
        chart: Some(Chart {
            kind: ChartKind::Lines,
            label: "date",
            value: "gross",
        }),
        run: |state, f| by_day(state, f).boxed(),
    },
    Report {
        id: "management.sales_by_hour",
        title: "Sales by hour of day",
        description: "The period's sales per hour of the day (business timezone), 0 to 23.",
        permissions: &[REPORTS_READ, super::READ],
        params: SALES_PARAMS,
        columns: summary_columns!(Column::new("hour", "Hour", ColumnKind::Integer)),
        chart: bars("hour", "gross"),
        run: |state, f| by_hour(state, f).boxed(),
    },
    Report {
        id: "management.sales_by_weekday",
        title: "Sales by weekday",
        description: "The period's sales per weekday of the business date, Monday first.",
        permissions: &[REPORTS_READ, super::READ],
        params: SALES_PARAMS,
        columns: summary_columns!(Column::new("weekday", "Weekday", ColumnKind::Text)),
        chart: bars("weekday", "gross"),
        run: |state, f| by_weekday(state, f).boxed(),
    },
    Report {
        id: "management.sales_by_cashier",
        title: "Sales by cashier",
        description: "The period's sales per cashier, largest gross first.",
        permissions: &[REPORTS_READ, super::READ],
        params: SALES_PARAMS,
        columns: summary_columns!(Column::new(
            "cashier",
            "Cashier",
            ColumnKind::Ref(RefKind::User)
        )),
        chart: bars("cashier", "gross"),
        run: |state, f| by_key(state, f, "cashier_id").boxed(),
    },
    Report {
        id: "management.sales_by_register",
        title: "Sales by register",
        description: "The period's sales per register, largest gross first.",
        permissions: &[REPORTS_READ, super::READ],
        params: SALES_PARAMS,
        columns: summary_columns!(Column::new(
            "register",
            "Register",
            ColumnKind::Ref(RefKind::Register)
        )),
        chart: bars("register", "gross"),
        run: |state, f| by_key(state, f, "register_id").boxed(),
    },
    Report {
        id: "management.sales_by_product",
        title: "Sales by product",
        description: "Quantity, net, gross and discounts per product, largest gross first (`limit` rows).",
        permissions: &[REPORTS_READ, super::READ],
        params: PRODUCT_PARAMS,
        columns: product_columns!(Column::new(
            "product",
            "Product",
            ColumnKind::Ref(RefKind::Product)
        )),
        chart: bars("product", "gross"),
        run: |state, f| by_product(state, f, false).boxed(),
    },
    Report {
        id: "management.sales_by_category",
        title: "Sales by category",
        description: "Quantity, net, gross and discounts per product category (the product's category now), largest gross first.",
        permissions: &[REPORTS_READ, super::READ],
        params: PRODUCT_PARAMS,
        columns: product_columns!(Column::new(
            "category",
            "Category",
            ColumnKind::Ref(RefKind::Category)
        )),
        chart: bars("category", "gross"),
        run: |state, f| by_category(state, f, false).boxed(),
    },
    Report {
        id: "management.gross_margin_by_product",
        title: "Gross margin by product",
        description: "Net sales, cost at the time of sale and margin per product, largest margin first (cost and margin for readers of cost prices).",
        permissions: &[REPORTS_READ, super::READ],
        params: PRODUCT_PARAMS,
        columns: margin_columns!(Column::new(
            "product",
            "Product",
            ColumnKind::Ref(RefKind::Product)
        )),
        chart: bars("product", "margin"),
        run: |state, f| by_product(state, f, true).boxed(),
    },
    Report {
        id: "management.gross_margin_by_category",
        title: "Gross margin by category",
        description: "Net sales, cost at the time of sale and margin per product category (cost and margin for readers of cost prices).",
        permissions: &[REPORTS_READ, super::READ],
        params: PRODUCT_PARAMS,
        columns: margin_columns!(Column::new(
            "category",
            "Category",
            ColumnKind::Ref(RefKind::Category)
        )),
        chart: bars("category", "margin"),
        run: |state, f| by_category(state, f, true).boxed(),
    },
    Report {
        id: "management.discounts",
        title: "Discounts by reason and cashier",
        description: "Discounts given (a line's own or a whole sale's) per reason and cashier, largest amount first.",
        permissions: &[REPORTS_READ, super::READ],
        params: SALES_PARAMS,
        columns: &[
            Column::new("reason_code", "Reason", ColumnKind::Text),
            Column::new("cashier", "Cashier", ColumnKind::Ref(RefKind::User)),
            Column::new("discounts", "Discounts", ColumnKind::Integer).summed(),
            Column::new("amount", "Amount", ColumnKind::Money).summed(),
        ],
        chart: None,
        run: |state, f| discounts(state, f).boxed(),
    },
    Report {
        id: "management.top_customers",
        title: "Top customers",
        description: "Customers by what their sales came to in the period, largest first (`limit` rows).",
        permissions: &[REPORTS_READ, super::READ, customers::READ],
        params: &[Param::Period, Param::Branch, Param::Register, Param::Limit],
        columns: &[
            Column::new("customer", "Customer", ColumnKind::Ref(RefKind::Customer)),
            Column::new("sales", "Sales", ColumnKind::Integer).summed(),
            Column::new("gross", "Gross", ColumnKind::Money).summed(),
            Column::new("average_basket", "Avg basket", ColumnKind::Money),
        ],
        chart: bars("customer", "gross"),
        run: |state, f| top_customers(state, f).boxed(),
    },
    Report {
        id: "management.stock_movements_by_reason",
        title: "Stock movements by reason",
        description: "Per reason (sale, return, receipt, count, transfer...), the stock movements of the period: how many, the quantity in and out. Sales count the lines of products that track stock.",
        permissions: &[REPORTS_READ, super::READ],
        params: &[Param::Period, Param::Branch],
        columns: &[
            Column::new("reason_code", "Reason", ColumnKind::Text),
            Column::new("movements", "Movements", ColumnKind::Integer).summed(),
            Column::new("quantity_in", "In", ColumnKind::Quantity).summed(),
            Column::new("quantity_out", "Out", ColumnKind::Quantity).summed(),
            Column::new("net", "Net", ColumnKind::Quantity).summed(),
        ],
        chart: bars("reason_code", "movements"),
        run: |state, f| movements_by_reason(state, f).boxed(),
    },
];

/// Drains the rollup queue and opens a connection: what every report does first.
async fn ready(state: &AppState) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, ApiError> {
    rollup::drain(state).await?;
    Ok(state.pool().acquire().await?)
}

/// One summary row from the hourly rollup: sales, items, net, tax, gross, discount.
type Summary = (i64, Decimal, Decimal, Decimal, Decimal, Decimal);

const SUMMED: &str = "coalesce(sum(sales), 0)::bigint, coalesce(sum(items), 0), coalesce(sum(net), 0), \
     coalesce(sum(tax), 0), coalesce(sum(gross), 0), coalesce(sum(discount), 0)";
const HOURLY_WHERE: &str = "day BETWEEN $1 AND $2 AND ($3::uuid[] IS NULL OR register_id = ANY($3)) \
     AND ($4::uuid IS NULL OR cashier_id = $4)";

fn summary_cells(key: Cell, s: Summary) -> Vec<Cell> {
    let (sales, items, net, tax, gross, discount) = s;
    let average = (sales > 0).then(|| gross / Decimal::from(sales));
    vec![
        key,
        Cell::Int(sales),
        Cell::Dec(items),
        Cell::Dec(net),
        Cell::Dec(tax),
        Cell::Dec(gross),
        Cell::Dec(discount),
        Cell::from(average),
    ]
}

async fn keyed<K>(
    conn: &mut PgConnection,
    f: &Filters,
    key: &str,
) -> Result<Vec<(K, Summary)>, ApiError>
where
    K: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    let rows: Vec<(K, i64, Decimal, Decimal, Decimal, Decimal, Decimal)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {key} AS key, {SUMMED} FROM report_sales_hourly WHERE {HOURLY_WHERE} GROUP BY 1"
        )))
        .bind(f.from)
        .bind(f.to)
        .bind(&f.registers)
        .bind(f.cashier)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(k, a, b, c, d, e, g)| (k, (a, b, c, d, e, g)))
        .collect())
}

const ZERO: Summary = (
    0,
    Decimal::ZERO,
    Decimal::ZERO,
    Decimal::ZERO,
    Decimal::ZERO,
    Decimal::ZERO,
);

async fn by_day(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let found: HashMap<NaiveDate, Summary> =
        keyed(&mut conn, f, "day").await?.into_iter().collect();
    let mut rows = Vec::new();
    let mut day = f.from;
    while day <= f.to {
        rows.push(summary_cells(
            Cell::Date(day),
            found.get(&day).copied().unwrap_or(ZERO),
        ));
        day += Duration::days(1);
    }
    Ok(rows)
}

async fn by_hour(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let found: HashMap<i16, Summary> = keyed(&mut conn, f, "hour").await?.into_iter().collect();
    Ok((0..24)
        .map(|h| {
            summary_cells(
                Cell::Int(i64::from(h)),
                found.get(&h).copied().unwrap_or(ZERO),
            )
        })
        .collect())
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

async fn by_weekday(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let found: HashMap<i32, Summary> = keyed(&mut conn, f, "extract(isodow FROM day)::int")
        .await?
        .into_iter()
        .collect();
    Ok((1..=7)
        .map(|d| {
            summary_cells(
                Cell::Text(WEEKDAYS[(d - 1) as usize].to_owned()),
                found.get(&d).copied().unwrap_or(ZERO),
            )
        })
        .collect())
}

async fn by_key(state: &AppState, f: &Filters, key: &str) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let mut found: Vec<(Uuid, Summary)> = keyed(&mut conn, f, key).await?;
    found.sort_by(|a, b| b.1.4.cmp(&a.1.4).then(a.0.cmp(&b.0)));
    Ok(found
        .into_iter()
        .map(|(k, s)| summary_cells(Cell::Ref(k), s))
        .collect())
}

/// One product's totals over a period and registers.
#[derive(Debug, Clone, Default)]
pub struct ProductTotals {
    pub lines: i64,
    pub quantity: Decimal,
    pub net: Decimal,
    pub gross: Decimal,
    pub discount: Decimal,
    pub cost: Decimal,
    pub cost_missing: i64,
}

impl ProductTotals {
    fn add(&mut self, other: &ProductTotals) {
        self.lines += other.lines;
        self.quantity += other.quantity;
        self.net += other.net;
        self.gross += other.gross;
        self.discount += other.discount;
        self.cost += other.cost;
        self.cost_missing += other.cost_missing;
    }
}

/// The whole months inside `[from, to]` as `[first, after)` (empty when there are none).
fn whole_months(from: NaiveDate, to: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = if from.day() == 1 {
        from
    } else {
        next_month(from)
    };
    let after = next_month(to);
    let after = if after - Duration::days(1) == to {
        after
    } else {
        to.with_day(1).unwrap_or(to)
    };
    if first < after {
        (first, after)
    } else {
        (from, from)
    }
}

fn next_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(d)
}

/// Per product, the totals of the period (whole months from the monthly rollup, the other days
/// from the daily one), for `registers` and `products` (`None`: all).
pub async fn product_totals(
    conn: &mut PgConnection,
    from: NaiveDate,
    to: NaiveDate,
    registers: Option<&[Uuid]>,
    products: Option<&[Uuid]>,
) -> Result<Vec<(Uuid, ProductTotals)>, sqlx::Error> {
    let (first, after) = whole_months(from, to);
    type Row = (Uuid, i64, Decimal, Decimal, Decimal, Decimal, Decimal, i64);
    // Planned for these dates every time (a generic plan of a prepared statement cannot tell a
    // month from a year and scans the whole daily rollup: 0.9 s instead of 0.45 over a busy
    // year, docs/PERFORMANCE.md), with room to aggregate a year's rows in memory.
    let mut tx = crate::core::db::read_with_settings(
        conn,
        &[
            ("plan_cache_mode", "force_custom_plan"),
            ("work_mem", "64MB"),
        ],
    )
    .await?;
    let rows: Vec<Row> = sqlx::query_as(
        "WITH r AS (SELECT register_id, product_id, lines, quantity, net, gross, discount, cost, cost_missing \
                      FROM report_products_monthly WHERE month >= $3 AND month < $4 \
                    UNION ALL \
                    SELECT register_id, product_id, lines, quantity, net, gross, discount, cost, cost_missing \
                      FROM report_products_daily WHERE day BETWEEN $1 AND $2 AND NOT (day >= $3 AND day < $4)) \
         SELECT product_id, sum(lines)::bigint, sum(quantity), sum(net), sum(gross), sum(discount), sum(cost), \
                sum(cost_missing)::bigint \
           FROM r WHERE ($5::uuid[] IS NULL OR register_id = ANY($5)) AND ($6::uuid[] IS NULL OR product_id = ANY($6)) \
          GROUP BY product_id",
    )
    .bind(from)
    .bind(to)
    .bind(first)
    .bind(after)
    .bind(registers)
    .bind(products)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, lines, quantity, net, gross, discount, cost, cost_missing)| {
                (
                    id,
                    ProductTotals {
                        lines,
                        quantity,
                        net,
                        gross,
                        discount,
                        cost,
                        cost_missing,
                    },
                )
            },
        )
        .collect())
}

/// The products the filters name (a product, a category subtree, both: their intersection).
async fn products_asked(
    conn: &mut PgConnection,
    f: &Filters,
) -> Result<Option<Vec<Uuid>>, ApiError> {
    let in_categories = match &f.categories {
        Some(categories) => Some(catalog::products_in_categories(conn, categories).await?),
        None => None,
    };
    Ok(match (f.product, in_categories) {
        (None, None) => None,
        (Some(p), None) => Some(vec![p]),
        (None, Some(list)) => Some(list),
        (Some(p), Some(list)) => Some(list.into_iter().filter(|id| *id == p).collect()),
    })
}

/// Cost, margin, margin % and lines without cost; no margin when a line's cost is unknown (a
/// margin over part of the lines would read as the whole).
fn margin_cells(t: &ProductTotals) -> [Cell; 4] {
    let margin = (t.cost_missing == 0).then(|| t.net - t.cost);
    let percent = margin
        .filter(|_| !t.net.is_zero())
        .map(|m| m * Decimal::ONE_HUNDRED / t.net);
    [
        Cell::Dec(t.cost),
        Cell::from(margin),
        Cell::from(percent),
        Cell::Int(t.cost_missing),
    ]
}

fn product_cells(key: Cell, t: &ProductTotals, margins: bool) -> Vec<Cell> {
    let mut row = vec![key, Cell::Dec(t.quantity), Cell::Dec(t.net)];
    if margins {
        row.extend(margin_cells(t));
    } else {
        row.push(Cell::Dec(t.gross));
        row.push(Cell::Dec(t.discount));
    }
    row
}

/// Largest first: by margin for a margin report read by a holder of costs, else by gross
/// (by net for a margin report without costs: its visible figure).
fn rank(rows: &mut [(Option<Uuid>, ProductTotals)], margins: bool, sees_costs: bool) {
    let key = |t: &ProductTotals| match (margins, sees_costs) {
        // Unknown margins last.
        (true, true) if t.cost_missing > 0 => Decimal::MIN,
        (true, true) => t.net - t.cost,
        (true, false) => t.net,
        _ => t.gross,
    };
    rows.sort_by(|a, b| key(&b.1).cmp(&key(&a.1)).then(a.0.cmp(&b.0)));
}

async fn by_product(
    state: &AppState,
    f: &Filters,
    margins: bool,
) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let products = products_asked(&mut conn, f).await?;
    let totals = product_totals(
        &mut conn,
        f.from,
        f.to,
        f.registers.as_deref(),
        products.as_deref(),
    )
    .await?;
    let mut rows: Vec<(Option<Uuid>, ProductTotals)> =
        totals.into_iter().map(|(id, t)| (Some(id), t)).collect();
    rank(&mut rows, margins, f.sees_costs);
    rows.truncate(usize::try_from(f.limit).unwrap_or(0));
    Ok(rows
        .iter()
        .map(|(id, t)| product_cells(id.map_or(Cell::Null, Cell::Ref), t, margins))
        .collect())
}

async fn by_category(
    state: &AppState,
    f: &Filters,
    margins: bool,
) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let products = products_asked(&mut conn, f).await?;
    let totals = product_totals(
        &mut conn,
        f.from,
        f.to,
        f.registers.as_deref(),
        products.as_deref(),
    )
    .await?;
    let ids: Vec<Uuid> = totals.iter().map(|(id, _)| *id).collect();
    let category: HashMap<Uuid, Option<Uuid>> = catalog::categories_of(&mut conn, &ids)
        .await?
        .into_iter()
        .collect();
    let mut per: HashMap<Option<Uuid>, ProductTotals> = HashMap::new();
    for (id, t) in &totals {
        per.entry(category.get(id).copied().flatten())
            .or_default()
            .add(t);
    }
    let mut rows: Vec<(Option<Uuid>, ProductTotals)> = per.into_iter().collect();
    rank(&mut rows, margins, f.sees_costs);
    rows.truncate(usize::try_from(f.limit).unwrap_or(0));
    Ok(rows
        .iter()
        .map(|(id, t)| product_cells(id.map_or(Cell::Null, Cell::Ref), t, margins))
        .collect())
}

async fn discounts(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let rows: Vec<(String, Uuid, i64, Decimal)> = sqlx::query_as(
        "SELECT reason_code, cashier_id, sum(discounts)::bigint, sum(amount) FROM report_discounts_daily \
          WHERE day BETWEEN $1 AND $2 AND ($3::uuid[] IS NULL OR register_id = ANY($3)) \
            AND ($4::uuid IS NULL OR cashier_id = $4) \
          GROUP BY 1, 2 ORDER BY 4 DESC, 1, 2",
    )
    .bind(f.from)
    .bind(f.to)
    .bind(&f.registers)
    .bind(f.cashier)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(reason, cashier, n, amount)| {
            vec![
                Cell::Text(reason),
                Cell::Ref(cashier),
                Cell::Int(n),
                Cell::Dec(amount),
            ]
        })
        .collect())
}

async fn top_customers(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let rows: Vec<(Uuid, i64, Decimal)> = sqlx::query_as(
        "SELECT customer_id, sum(sales)::bigint, sum(gross) FROM report_customers_daily \
          WHERE day BETWEEN $1 AND $2 AND ($3::uuid[] IS NULL OR register_id = ANY($3)) \
          GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT $4",
    )
    .bind(f.from)
    .bind(f.to)
    .bind(&f.registers)
    .bind(f.limit)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(customer, n, gross)| {
            let average = (n > 0).then(|| gross / Decimal::from(n));
            vec![
                Cell::Ref(customer),
                Cell::Int(n),
                Cell::Dec(gross),
                Cell::from(average),
            ]
        })
        .collect())
}

/// Stock movements by reason: the sale lines of products that track stock (from the rollups),
/// and the other movements (stock's own table, through its api).
async fn movements_by_reason(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = ready(state).await?;
    let sold = product_totals(&mut conn, f.from, f.to, f.registers.as_deref(), None).await?;
    let ids: Vec<Uuid> = sold.iter().map(|(id, _)| *id).collect();
    let tracked: std::collections::HashSet<Uuid> = catalog::stock_facts(&mut conn, &ids)
        .await?
        .into_iter()
        .filter(|p| p.track_stock)
        .map(|p| p.id)
        .collect();
    let (mut lines, mut quantity) = (0i64, Decimal::ZERO);
    for (id, t) in &sold {
        if tracked.contains(id) {
            lines += t.lines;
            quantity += t.quantity;
        }
    }
    let mut rows: Vec<(String, i64, Decimal, Decimal)> =
        stock::movements_by_reason(&mut conn, f.start, f.end, f.locations.as_deref()).await?;
    if lines > 0 {
        rows.push(("sale".to_owned(), lines, Decimal::ZERO, quantity));
    }
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(rows
        .into_iter()
        .map(|(reason, n, into, out)| {
            vec![
                Cell::Text(reason),
                Cell::Int(n),
                Cell::Dec(into),
                Cell::Dec(out),
                Cell::Dec(into - out),
            ]
        })
        .collect())
}

/// Per tax rate, the sales' net, tax and gross over a period and registers.
pub async fn tax_totals(
    state: &AppState,
    f: &Filters,
) -> Result<Vec<(Decimal, Decimal, Decimal, Decimal)>, ApiError> {
    let mut conn = ready(state).await?;
    Ok(sqlx::query_as(
        "SELECT rate, sum(net), sum(tax), sum(gross) FROM report_taxes_daily \
          WHERE day BETWEEN $1 AND $2 AND ($3::uuid[] IS NULL OR register_id = ANY($3)) GROUP BY 1 ORDER BY 1",
    )
    .bind(f.from)
    .bind(f.to)
    .bind(&f.registers)
    .fetch_all(&mut *conn)
    .await?)
}

/// Per payment method, the payments and what they took (cash less change) over a period,
/// registers and cashier.
pub async fn payment_totals(
    state: &AppState,
    f: &Filters,
) -> Result<Vec<(String, i64, Decimal)>, ApiError> {
    let mut conn = ready(state).await?;
    Ok(sqlx::query_as(
        "SELECT method, sum(payments)::bigint, sum(amount) FROM report_payments_daily \
          WHERE day BETWEEN $1 AND $2 AND ($3::uuid[] IS NULL OR register_id = ANY($3)) \
            AND ($4::uuid IS NULL OR cashier_id = $4) GROUP BY 1 ORDER BY 1",
    )
    .bind(f.from)
    .bind(f.to)
    .bind(&f.registers)
    .bind(f.cashier)
    .fetch_all(&mut *conn)
    .await?)
}

/// Per product, the quantity sold and lines over a period and registers (stock's movement
/// report).
pub async fn sold_per_product(
    state: &AppState,
    f: &Filters,
) -> Result<Vec<(Uuid, i64, Decimal)>, ApiError> {
    let mut conn = ready(state).await?;
    let totals = product_totals(&mut conn, f.from, f.to, f.registers.as_deref(), None).await?;
    Ok(totals
        .into_iter()
        .map(|(id, t)| (id, t.lines, t.quantity))
        .collect())
}

/// Today's sales count and gross (the returns rate KPI).
pub async fn day_totals(state: &AppState, day: NaiveDate) -> Result<(i64, Decimal), ApiError> {
    let mut conn = ready(state).await?;
    Ok(sqlx::query_as(
        "SELECT coalesce(sum(sales), 0)::bigint, coalesce(sum(gross), 0) FROM report_sales_hourly WHERE day = $1",
    )
    .bind(day)
    .fetch_one(&mut *conn)
    .await?)
}

// KPIs.

pub const KPIS: &[Kpi] = &[
    Kpi {
        id: "sales.today",
        title: "Sales today",
        unit: "money",
        permission: DASHBOARD,
        refresh_secs: 60,
        changed_by: &["sales"],
        run: |state, t| today_figure(state, t, Figure::Gross).boxed(),
    },
    Kpi {
        id: "sales.count_today",
        title: "Sales count today",
        unit: "count",
        permission: DASHBOARD,
        refresh_secs: 60,
        changed_by: &["sales"],
        run: |state, t| today_figure(state, t, Figure::Count).boxed(),
    },
    Kpi {
        id: "sales.average_basket",
        title: "Average basket today",
        unit: "money",
        permission: DASHBOARD,
        refresh_secs: 60,
        changed_by: &["sales"],
        run: |state, t| today_figure(state, t, Figure::AverageBasket).boxed(),
    },
    Kpi {
        id: "sales.items_per_basket",
        title: "Items per basket today",
        unit: "items",
        permission: DASHBOARD,
        refresh_secs: 60,
        changed_by: &["sales"],
        run: |state, t| today_figure(state, t, Figure::ItemsPerBasket).boxed(),
    },
    Kpi {
        id: "sales.gross_margin_percent",
        title: "Gross margin today",
        unit: "percent",
        permission: COST_PRICE_READ,
        refresh_secs: 60,
        changed_by: &["sales"],
        run: |state, t| today_figure(state, t, Figure::MarginPercent).boxed(),
    },
    Kpi {
        id: "sales.top_products_today",
        title: "Top 5 products today",
        unit: "ranking",
        permission: DASHBOARD,
        refresh_secs: 60,
        changed_by: &["sales"],
        run: |state, t| top_products_today(state, t).boxed(),
    },
    Kpi {
        id: "sales.per_hour",
        title: "Sales per hour today, against the same weekday last week",
        unit: "series",
        permission: DASHBOARD,
        refresh_secs: 60,
        changed_by: &["sales"],
        run: |state, t| per_hour(state, t).boxed(),
    },
];

#[derive(Clone, Copy)]
enum Figure {
    Gross,
    Count,
    AverageBasket,
    ItemsPerBasket,
    MarginPercent,
}

/// A money or quantity figure as the API writes amounts: a string, at most 2 decimals for money
/// and percentages.
fn shown(value: Decimal, places: u32) -> Value {
    let mut v =
        value.round_dp_with_strategy(places, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    v.rescale(places);
    Value::String(v.to_string())
}

async fn today_figure(state: &AppState, t: &Today, figure: Figure) -> Result<Value, ApiError> {
    let mut conn = ready(state).await?;
    if let Figure::MarginPercent = figure {
        // Over the products whose every line today has a known cost.
        let (net, cost): (Decimal, Decimal) = sqlx::query_as(
            "SELECT coalesce(sum(net), 0), coalesce(sum(cost), 0) FROM report_products_daily \
              WHERE day = $1 AND cost_missing = 0",
        )
        .bind(t.date)
        .fetch_one(&mut *conn)
        .await?;
        return Ok(if net.is_zero() {
            Value::Null
        } else {
            shown((net - cost) * Decimal::ONE_HUNDRED / net, 1)
        });
    }
    let (sales, items, gross): (i64, Decimal, Decimal) = sqlx::query_as(
        "SELECT coalesce(sum(sales), 0)::bigint, coalesce(sum(items), 0), coalesce(sum(gross), 0) \
           FROM report_sales_hourly WHERE day = $1",
    )
    .bind(t.date)
    .fetch_one(&mut *conn)
    .await?;
    let per_sale = |v: Decimal| {
        if sales == 0 {
            Decimal::ZERO
        } else {
            v / Decimal::from(sales)
        }
    };
    Ok(match figure {
        Figure::Count => json!(sales),
        Figure::AverageBasket => shown(per_sale(gross), 2),
        Figure::ItemsPerBasket => shown(per_sale(items), 2),
        Figure::Gross | Figure::MarginPercent => shown(gross, 2),
    })
}

async fn top_products_today(state: &AppState, t: &Today) -> Result<Value, ApiError> {
    let mut conn = ready(state).await?;
    let rows: Vec<(Uuid, Decimal, Decimal)> = sqlx::query_as(
        "SELECT product_id, sum(quantity), sum(gross) FROM report_products_daily WHERE day = $1 \
          GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 5",
    )
    .bind(t.date)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    let names: HashMap<Uuid, String> = catalog::product_labels(&mut conn, &ids)
        .await?
        .into_iter()
        .collect();
    Ok(Value::Array(
        rows.into_iter()
            .map(|(id, quantity, gross)| {
                json!({
                    "product_id": id,
                    "name": names.get(&id),
                    "quantity": quantity.normalize().to_string(),
                    "value": shown(gross, 2),
                })
            })
            .collect(),
    ))
}

async fn per_hour(state: &AppState, t: &Today) -> Result<Value, ApiError> {
    let mut conn = ready(state).await?;
    let before = t.date - Duration::days(7);
    let rows: Vec<(NaiveDate, i16, Decimal)> = sqlx::query_as(
        "SELECT day, hour, sum(gross) FROM report_sales_hourly WHERE day = $1 OR day = $2 GROUP BY 1, 2",
    )
    .bind(t.date)
    .bind(before)
    .fetch_all(&mut *conn)
    .await?;
    let mut today = [Decimal::ZERO; 24];
    let mut compare = [Decimal::ZERO; 24];
    for (day, hour, gross) in rows {
        let slot = if day == t.date {
            &mut today
        } else {
            &mut compare
        };
        if let Some(v) = slot.get_mut(usize::try_from(hour).unwrap_or(24)) {
            *v = gross;
        }
    }
    Ok(Value::Array(
        (0..24)
            .map(|h| json!({"hour": h, "value": shown(today[h], 2), "compare": shown(compare[h], 2)}))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn whole_months_are_those_the_period_covers_entirely() {
        assert_eq!(
            whole_months(d(2026, 1, 1), d(2026, 12, 31)),
            (d(2026, 1, 1), d(2027, 1, 1))
        );
        assert_eq!(
            whole_months(d(2026, 1, 15), d(2026, 3, 10)),
            (d(2026, 2, 1), d(2026, 3, 1))
        );
        assert_eq!(
            whole_months(d(2026, 2, 1), d(2026, 2, 28)),
            (d(2026, 2, 1), d(2026, 3, 1))
        );
        // None: the daily rollup alone.
        let (a, b) = whole_months(d(2026, 2, 3), d(2026, 2, 20));
        assert_eq!(a, b);
        let (a, b) = whole_months(d(2026, 1, 20), d(2026, 2, 10));
        assert_eq!(a, b);
        assert_eq!(
            whole_months(d(2025, 12, 1), d(2026, 1, 31)),
            (d(2025, 12, 1), d(2026, 2, 1))
        );
    }
}
