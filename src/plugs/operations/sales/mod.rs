//! `operations.sales`: idempotent sale creation (server-computed totals, taxes and change,
//! gap-free receipt numbers per register, stock taken off in the same transaction), and reading
//! sales back. A completed sale is immutable (the database refuses changes).

mod columns;
pub mod discounts;
pub mod http;
pub mod offline;
pub mod prepare;
pub mod pricing;
pub mod record;
pub mod reports;
pub mod rollup;
pub mod store;
pub mod writer;

use futures_util::FutureExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module, ModulePermission, Topic};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;
use crate::plugs::management::api::customers::{DocumentSource, SalesOfCustomers};
use crate::plugs::operations::api::cash::SessionSalesSource;

pub const CREATE: &str = "operations.sales.create";
pub const READ: &str = "operations.sales.read";
pub const PRICE_OVERRIDE: &str = "operations.sales.price_override";
pub const VOID: &str = "operations.sales.void";
pub const DISCOUNT: &str = "operations.sales.discount";
/// The setting: how far (percent of a line) a cashier without `DISCOUNT` may discount alone.
pub const MAX_CASHIER_DISCOUNT: &str = "sales.max_cashier_discount_percent";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: CREATE,
        description: "Ring up sales and take payments",
        roles: &["cashier", "manager"],
    },
    ModulePermission {
        name: READ,
        description: "See sales",
        roles: &["cashier", "manager", "accountant", "auditor"],
    },
    ModulePermission {
        name: PRICE_OVERRIDE,
        description: "Sell at a price other than the catalog's (others need a manager's approval)",
        roles: &["manager"],
    },
    ModulePermission {
        name: VOID,
        description: "Void a sale while its cash session is open (others need a manager's approval)",
        roles: &["manager"],
    },
    ModulePermission {
        name: DISCOUNT,
        description: "Give discounts above the cashier limit (`sales.max_cashier_discount_percent`) without approval",
        roles: &["manager"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "management.customers",
        requirement: "^1",
    },
    Dependency {
        id: "management.catalog",
        requirement: "^1",
    },
    Dependency {
        id: "management.stock",
        requirement: "^1",
    },
    Dependency {
        id: "operations.cash",
        requirement: "^1",
    },
    Dependency {
        id: "administration.places",
        requirement: "^1",
    },
    Dependency {
        id: "operations.approvals",
        requirement: "^1",
    },
];

const DOCTOR_CHECKS: &[crate::core::modules::Verifier] = &[crate::core::modules::Verifier {
    name: "report_rollups",
    run: |pool, _keys, _args| Box::pin(rollup::doctor_check(pool)),
}];

const TOPICS: &[Topic] = &[Topic {
    name: "sales",
    permission: READ,
    description: "sale.completed",
}];

/// The module.
pub struct Sales;

/// The receipt number format's rule: `{number}` once, only known placeholders, and `{register}`
/// and `{year}`: the counter runs per register and year, and a receipt number is unique in the
/// business, so a format without either would repeat a number and stop the sales that follow.
fn receipt_format(value: &serde_json::Value) -> Result<(), String> {
    let format = value.as_str().unwrap_or_default();
    if format.matches("{number}").count() != 1 {
        return Err("must contain {number} exactly once".to_owned());
    }
    if !format.contains("{register}") || !format.contains("{year}") {
        return Err(
            "must contain {register} and {year}: the counter restarts per register and year"
                .to_owned(),
        );
    }
    let rest = ["{number}", "{register}", "{year}"]
        .iter()
        .fold(format.to_owned(), |s, p| s.replace(p, ""));
    if rest.contains(['{', '}']) {
        return Err("may only use the placeholders {register}, {year} and {number}".to_owned());
    }
    Ok(())
}

const SETTINGS: &[Setting] = &[
    Setting::new(
        MAX_CASHIER_DISCOUNT,
        SettingType::Integer { min: 0, max: 100 },
        DefaultValue::Integer(0),
        "How far (percent of each line, line and sale discounts together) a cashier without operations.sales.discount may discount without a manager's approval; 0: every discount needs one.",
    )
    .with_reason(),
    Setting::new(
        "numbering.receipt_format",
        SettingType::Text { max_chars: 40 },
        DefaultValue::Text(crate::core::settings::DEFAULT_RECEIPT_FORMAT),
        "Receipt number format: {register} the register's code, {year} the year in the business timezone, {number} the counter (all three required). Applies from the next sale.",
    )
    .with_rule(receipt_format)
    .with_reason(),
    Setting::new(
        "numbering.receipt_digits",
        SettingType::Integer { min: 1, max: 12 },
        DefaultValue::Integer(6),
        "Digits the receipt counter is padded to with zeros (it grows past them, never cut).",
    )
    .with_reason(),
    Setting::new(
        "sales.allow_negative_stock",
        SettingType::Bool,
        DefaultValue::Bool(true),
        "Feature switch: a sale may take a tracked product below zero at its location (the shelf count is wrong, not the sale); off: such a sale is refused (409 stock.insufficient).",
    )
    .with_reason(),
    Setting::new(
        "payment.cash_rounding",
        SettingType::Amount { positive: true, max: Some("100") },
        DefaultValue::MinorUnit,
        "The smallest cash amount handed over (\"0.05\" in Switzerland): cash due is rounded to it. At least the currency's smallest unit.",
    )
    .with_reason(),
];

impl Module for Sales {
    fn id(&self) -> &'static str {
        "operations.sales"
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Sales with idempotent creation and gap-free receipt numbers"
    }

    fn dependencies(&self) -> &'static [Dependency] {
        DEPENDENCIES
    }

    fn permissions(&self) -> &'static [ModulePermission] {
        PERMISSIONS
    }

    fn topics(&self) -> &'static [Topic] {
        TOPICS
    }

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "sales",
            "sale_lines",
            "sale_payments",
            "sale_taxes",
            "receipt_counters",
            "report_queue",
            "report_rollup_state",
            "report_sales_hourly",
            "report_products_daily",
            "report_products_monthly",
            "report_payments_daily",
            "report_taxes_daily",
            "report_discounts_daily",
            "report_customers_daily",
        ]
    }

    fn jobs(&self) -> Vec<crate::core::jobs::runner::Handler> {
        vec![crate::core::jobs::runner::Handler::new(
            rollup::CHECK_JOB,
            |ctx| rollup::check_job(ctx).boxed(),
        )]
    }

    fn schedules(&self) -> Vec<crate::core::jobs::schedule::ScheduledJob> {
        vec![crate::core::jobs::schedule::ScheduledJob {
            name: "report_rollups",
            job: rollup::CHECK_JOB,
            payload: serde_json::json!({}),
        }]
    }

    fn doctor_checks(&self) -> &'static [crate::core::modules::Verifier] {
        DOCTOR_CHECKS
    }

    fn reports(&self) -> &'static [crate::core::reports::Report] {
        reports::REPORTS
    }

    fn push_kinds(&self) -> &'static [crate::core::sync::push::PushKind] {
        offline::KINDS
    }

    fn kpis(&self) -> &'static [crate::core::reports::Kpi] {
        reports::KPIS
    }

    /// Gives the cash module a session's sales (cash cannot depend on sales: sales depend on it).
    fn install(&self, state: &AppState) {
        record::compose_statement();
        rollup::start(state);
        state.provide(SessionSalesSource(|conn, id| {
            store::session_sales(conn, id).boxed()
        }));
        state.provide(SalesOfCustomers(DocumentSource {
            documents: |conn, customer, before, limit| {
                store::customer_documents(conn, customer, before, limit).boxed()
            },
            latest: |conn| store::customers_latest(conn).boxed(),
        }));
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(Access::Permission(CREATE), routes!(http::create)))
            .routes(declare(Access::Permission(READ), routes!(http::list)))
            .routes(declare(Access::Permission(READ), routes!(http::get)))
    }
}
