//! Stock's reports: the stock's value at cost per location now, and the levels below their
//! minimum. (Movements by reason is the sales module's: most movements are sale lines, which it
//! rolls up; it reads the others through [`movements_by_reason`].)

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::http::ApiError;
use crate::core::reports::{
    Cell, Chart, ChartKind, Column, ColumnKind, Filters, Param, RUN as REPORTS_READ, RefKind,
    Report,
};
use crate::core::state::AppState;
use crate::plugs::management::api::catalog::{self, COST_PRICE_READ};

pub const REPORTS: &[Report] = &[
    Report {
        id: "management.stock_valuation",
        title: "Stock valuation at cost",
        description: "Per location now: the products in stock, their quantity and its value at today's cost prices (value for readers of cost prices).",
        permissions: &[REPORTS_READ, super::READ],
        params: &[Param::Branch, Param::Location],
        columns: &[
            Column::new("location", "Location", ColumnKind::Ref(RefKind::Location)),
            Column::new("products", "Products", ColumnKind::Integer).summed(),
            Column::new("quantity", "Quantity", ColumnKind::Quantity).summed(),
            Column::new("value", "Value at cost", ColumnKind::Money)
                .summed()
                .needs(COST_PRICE_READ),
            Column::new("products_without_cost", "No cost", ColumnKind::Integer)
                .summed()
                .needs(COST_PRICE_READ),
        ],
        chart: Some(Chart {
            kind: ChartKind::Bars,
            label: "location",
            value: "value",
        }),
        run: |state, f| valuation(state, f).boxed(),
    },
    Report {
        id: "management.low_stock",
        title: "Low stock",
        description: "Products below their minimum now, per location, with what to order.",
        permissions: &[REPORTS_READ, super::READ],
        params: &[Param::Branch, Param::Location],
        columns: &[
            Column::new("product", "Product", ColumnKind::Ref(RefKind::Product)),
            Column::new("location", "Location", ColumnKind::Ref(RefKind::Location)),
            Column::new("quantity", "Quantity", ColumnKind::Quantity),
            Column::new("min_quantity", "Minimum", ColumnKind::Quantity),
            Column::new("shortfall", "Shortfall", ColumnKind::Quantity).summed(),
            Column::new("reorder_quantity", "Reorder", ColumnKind::Quantity).summed(),
        ],
        chart: None,
        run: |state, f| low_stock(state, f).boxed(),
    },
];

async fn valuation(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let levels: Vec<(Uuid, Uuid, Decimal)> = sqlx::query_as(
        "SELECT location_id, product_id, quantity FROM stock_levels \
          WHERE quantity <> 0 AND ($1::uuid[] IS NULL OR location_id = ANY($1))",
    )
    .bind(&f.locations)
    .fetch_all(&mut *conn)
    .await?;
    let mut ids: Vec<Uuid> = levels.iter().map(|l| l.1).collect();
    ids.sort_unstable();
    ids.dedup();
    let costs: HashMap<Uuid, Decimal> = catalog::cost_prices(&mut conn, &ids)
        .await?
        .into_iter()
        .collect();
    // Per location: products, quantity, value, products without a cost.
    let mut per: BTreeMap<Uuid, (i64, Decimal, Decimal, i64)> = BTreeMap::new();
    for (location, product, quantity) in levels {
        let row = per.entry(location).or_default();
        row.0 += 1;
        row.1 += quantity;
        match costs.get(&product) {
            Some(cost) => row.2 += cost * quantity,
            None => row.3 += 1,
        }
    }
    let mut rows: Vec<_> = per.into_iter().collect();
    // Largest value first for a reader of costs; by quantity for others (the order must not
    // tell them what the hidden column would).
    if f.sees_costs {
        rows.sort_by(|a, b| b.1.2.cmp(&a.1.2).then(a.0.cmp(&b.0)));
    } else {
        rows.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(&b.0)));
    }
    Ok(rows
        .into_iter()
        .map(|(location, (products, quantity, value, missing))| {
            vec![
                Cell::Ref(location),
                Cell::Int(products),
                Cell::Dec(quantity),
                Cell::Dec(value),
                Cell::Int(missing),
            ]
        })
        .collect())
}

async fn low_stock(state: &AppState, f: &Filters) -> Result<Vec<Vec<Cell>>, ApiError> {
    let mut conn = state.pool().acquire().await?;
    let rows: Vec<(Uuid, Uuid, Decimal, Decimal, Option<Decimal>)> = sqlx::query_as(
        "SELECT product_id, location_id, quantity, min_quantity, reorder_quantity FROM stock_levels \
          WHERE min_quantity IS NOT NULL AND quantity < min_quantity \
            AND ($1::uuid[] IS NULL OR location_id = ANY($1)) \
          ORDER BY (min_quantity - quantity) DESC, product_id, location_id",
    )
    .bind(&f.locations)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(product, location, quantity, min, reorder)| {
            vec![
                Cell::Ref(product),
                Cell::Ref(location),
                Cell::Dec(quantity),
                Cell::Dec(min),
                Cell::Dec(min - quantity),
                Cell::from(reorder),
            ]
        })
        .collect())
}

/// Per reason, the movements other than sale lines in `[start, end)` (at `locations`, or all):
/// how many, the quantity in and the quantity out.
pub async fn movements_by_reason(
    conn: &mut PgConnection,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    locations: Option<&[Uuid]>,
) -> Result<Vec<(String, i64, Decimal, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT reason_code, count(*), coalesce(sum(quantity_delta) FILTER (WHERE quantity_delta > 0), 0), \
                coalesce(-sum(quantity_delta) FILTER (WHERE quantity_delta < 0), 0) \
           FROM stock_movements WHERE created_at >= $1 AND created_at < $2 \
            AND ($3::uuid[] IS NULL OR location_id = ANY($3)) GROUP BY 1",
    )
    .bind(start)
    .bind(end)
    .bind(locations)
    .fetch_all(conn)
    .await
}
