//! Reports and KPIs as modules declare them (`Module::reports`, `Module::kpis`). A module says
//! what a report is (its id, title, permissions, parameters, columns, chart) and how to compute
//! its rows from its own tables; `management.reports` lists them, checks the parameters, runs
//! them, names what the rows refer to, hides the columns a caller may not see and renders JSON,
//! CSV or PDF. KPIs are the dashboard's figures, computed the same way for the business day now.

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::future::BoxFuture;
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::core::http::ApiError;
use crate::core::state::AppState;

/// Running reports: the permission every report needs besides its own module's
/// (`management.reports` declares it; contributing modules name it through this constant).
pub const RUN: &str = "management.reports.read";
/// Seeing the dashboard (`management.reports` declares it; every KPI needs it besides its own).
pub const DASHBOARD: &str = "management.reports.dashboard";

/// A parameter a report accepts. Each has one query-string name (or two, for the period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `from` and `to`: business dates, both included (default: the month so far).
    Period,
    /// `branch_id`: the branch's registers and locations.
    Branch,
    /// `register_id`.
    Register,
    /// `cashier_id`.
    Cashier,
    /// `category_id`: the category and its subcategories.
    Category,
    /// `product_id`.
    Product,
    /// `customer_id`.
    Customer,
    /// `method`: `cash`, `card`, `voucher` or `other`.
    PaymentMethod,
    /// `location_id`.
    Location,
    /// `limit`: rows of a ranking (1 to 1000, default 20).
    Limit,
}

impl Param {
    /// Its names in the query string.
    pub fn names(self) -> &'static [&'static str] {
        match self {
            Param::Period => &["from", "to"],
            Param::Branch => &["branch_id"],
            Param::Register => &["register_id"],
            Param::Cashier => &["cashier_id"],
            Param::Category => &["category_id"],
            Param::Product => &["product_id"],
            Param::Customer => &["customer_id"],
            Param::PaymentMethod => &["method"],
            Param::Location => &["location_id"],
            Param::Limit => &["limit"],
        }
    }
}

/// What a column holds. A `Ref` column is an id the report framework names (the product's name,
/// the cashier's username...): JSON and CSV carry `<name>_id` and `<name>`, a PDF the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Integer,
    /// In the business currency.
    Money,
    Quantity,
    /// A percentage (`12.5` is 12.5 %).
    Percent,
    Date,
    Timestamp,
    Ref(RefKind),
}

/// What a `Ref` column's id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Product,
    Category,
    User,
    Register,
    Customer,
    Location,
}

/// One column of a report.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub title: &'static str,
    pub kind: ColumnKind,
    /// A field permission without which the column is left out (`cost`, `margin`).
    pub needs: Option<&'static str>,
    /// Summed in the totals row of CSV and PDF.
    pub total: bool,
}

impl Column {
    pub const fn new(name: &'static str, title: &'static str, kind: ColumnKind) -> Column {
        Column {
            name,
            title,
            kind,
            needs: None,
            total: false,
        }
    }

    /// Summed in the totals row.
    pub const fn summed(mut self) -> Column {
        self.total = true;
        self
    }

    /// Only for holders of `permission`.
    pub const fn needs(mut self, permission: &'static str) -> Column {
        self.needs = Some(permission);
        self
    }
}

/// How a PDF draws a report: bars (a ranking, a distribution) or a line (a time series).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartKind {
    Bars,
    Lines,
}

/// A chart of one column (`value`) against another (`label`).
#[derive(Debug, Clone, Copy)]
pub struct Chart {
    pub kind: ChartKind,
    pub label: &'static str,
    pub value: &'static str,
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Dec(Decimal),
    Date(NaiveDate),
    Time(DateTime<Utc>),
    /// An id the framework names (the column's `RefKind`).
    Ref(Uuid),
}

impl From<Option<Decimal>> for Cell {
    fn from(value: Option<Decimal>) -> Cell {
        value.map_or(Cell::Null, Cell::Dec)
    }
}

/// The checked parameters of one run, with what they resolve to.
#[derive(Debug, Clone)]
pub struct Filters {
    /// The period's business dates, both included.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The period as instants: `[start of from, start of the day after to)`.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The branch asked for.
    pub branch: Option<Uuid>,
    /// The registers asked for (a register, or a branch's): `None` for all.
    pub registers: Option<Vec<Uuid>>,
    /// The stock locations asked for (a location, or a branch's): `None` for all.
    pub locations: Option<Vec<Uuid>>,
    pub cashier: Option<Uuid>,
    /// The category asked for and its subcategories: `None` for all.
    pub categories: Option<Vec<Uuid>>,
    pub product: Option<Uuid>,
    pub customer: Option<Uuid>,
    pub method: Option<String>,
    pub limit: i64,
    /// The business date now.
    pub today: NaiveDate,
    /// Whether the caller may see cost prices (a report that ranks by margin needs to know).
    pub sees_costs: bool,
}

/// Computes a report's rows (one cell per declared column, hidden ones included).
pub type ReportRun =
    for<'a> fn(&'a AppState, &'a Filters) -> BoxFuture<'a, Result<Vec<Vec<Cell>>, ApiError>>;

/// A report a module offers.
#[derive(Clone, Copy)]
pub struct Report {
    /// `management.sales_by_day`.
    pub id: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// Running it needs all of these.
    pub permissions: &'static [&'static str],
    pub params: &'static [Param],
    pub columns: &'static [Column],
    pub chart: Option<Chart>,
    pub run: ReportRun,
}

/// The business day a KPI is computed for.
#[derive(Debug, Clone)]
pub struct Today {
    pub date: NaiveDate,
    /// The business day as instants.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Computes a KPI's value.
pub type KpiRun = for<'a> fn(&'a AppState, &'a Today) -> BoxFuture<'a, Result<Value, ApiError>>;

/// A dashboard figure a module offers.
#[derive(Clone, Copy)]
pub struct Kpi {
    /// `sales.today`.
    pub id: &'static str,
    pub title: &'static str,
    /// `money`, `count`, `percent`, `items`, `ranking` (a list of `{name, value}`) or `series`
    /// (per hour: `{hour, value, compare}`).
    pub unit: &'static str,
    /// Seeing it needs this (besides the dashboard's own permission).
    pub permission: &'static str,
    /// Computed again at least this often while anyone watches, and after every change of
    /// the topics in `changed_by`.
    pub refresh_secs: u32,
    /// WebSocket topics whose events change it (`sales`, `returns`, `cash`).
    pub changed_by: &'static [&'static str],
    pub run: KpiRun,
}
