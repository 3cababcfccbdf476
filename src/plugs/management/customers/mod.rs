//! `management.customers`: customers (searchable by name, email or phone; soft-deleted), the
//! price lists of customer groups that a sale naming a customer applies ([`rules`]), and the
//! customers' personal data: the export of everything held about one, its erasure, and the
//! retention job that proposes whom to erase. Personal values in audit records are sealed under
//! a key per customer that erasure destroys (`core::audit::personal`, docs/audit-chain.md).
//!
//! Sales and returns name customers; they provide the documents that name one
//! (`api::customers::SalesOfCustomers`, `ReturnsOfCustomers`), since they depend on this module.

pub mod http;
pub mod prices;
pub mod retention;
pub mod rules;
pub mod store;
pub mod sync;

use futures_util::FutureExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::jobs::runner::Handler;
use crate::core::jobs::schedule::ScheduledJob;
use crate::core::modules::{Dependency, Module, ModulePermission, ProtectedField};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "management.customers";

pub const READ: &str = "management.customers.read";
pub const WRITE: &str = "management.customers.write";
pub const EXPORT: &str = "management.customers.export";
pub const ERASE: &str = "management.customers.erase";
pub const PRICE_LISTS: &str = "management.customers.price_lists";

pub const RETENTION_DAYS: &str = "customers.retention_days";
pub const DEFAULT_RETENTION_DAYS: i64 = 1095;
pub const ERASE_NEEDS_APPROVAL: &str = "customers.erase_needs_approval";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: READ,
        description: "Find and read customers, their purchase history and prices (personal data)",
        roles: &["cashier", "manager", "accountant"],
    },
    ModulePermission {
        name: WRITE,
        description: "Create, change and delete customers",
        roles: &["cashier", "manager"],
    },
    ModulePermission {
        name: EXPORT,
        description: "Export everything held about a customer (GDPR Art. 15/20)",
        roles: &["manager"],
    },
    ModulePermission {
        name: ERASE,
        description: "Erase a customer's personal data (GDPR Art. 17), with a second holder's approval; see the retention proposals",
        roles: &["manager"],
    },
    ModulePermission {
        name: PRICE_LISTS,
        description: "Create and change the price lists of customer groups",
        roles: &["manager"],
    },
];

const DEPENDENCIES: &[Dependency] = &[
    Dependency {
        id: "management.catalog",
        requirement: "^1",
    },
    Dependency {
        id: "operations.approvals",
        requirement: "^1",
    },
];

const SETTINGS: &[Setting] = &[
    Setting::new(
        RETENTION_DAYS,
        SettingType::Integer { min: 0, max: 36500 },
        DefaultValue::Integer(DEFAULT_RETENTION_DAYS),
        "Days a customer with no sale, return or change is kept before the retention job proposes erasing them (0: never proposed). Nothing is erased without a person doing it.",
    )
    .with_reason(),
    Setting::new(
        ERASE_NEEDS_APPROVAL,
        SettingType::Bool,
        DefaultValue::Bool(true),
        "Feature switch: erasing a customer needs a second person's approval (off: one holder of management.customers.erase may erase alone, for a shop with one manager).",
    )
    .with_reason(),
];

/// The personal fields of a customer's audit records: only readers of customers see them.
const PROTECTED: &[ProtectedField] = &[
    ProtectedField {
        module: MODULE,
        entity: "customer",
        field: "name",
        permission: READ,
    },
    ProtectedField {
        module: MODULE,
        entity: "customer",
        field: "email",
        permission: READ,
    },
    ProtectedField {
        module: MODULE,
        entity: "customer",
        field: "phone",
        permission: READ,
    },
    ProtectedField {
        module: MODULE,
        entity: "customer",
        field: "tax_id",
        permission: READ,
    },
    ProtectedField {
        module: MODULE,
        entity: "customer",
        field: "address",
        permission: READ,
    },
    ProtectedField {
        module: MODULE,
        entity: "customer",
        field: "notes",
        permission: READ,
    },
];

/// The module.
pub struct Customers;

impl Module for Customers {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Customers, the price lists of customer groups, and customers' personal data"
    }

    fn dependencies(&self) -> &'static [Dependency] {
        DEPENDENCIES
    }

    fn permissions(&self) -> &'static [ModulePermission] {
        PERMISSIONS
    }

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn protected_fields(&self) -> &'static [ProtectedField] {
        PROTECTED
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "customers",
            "price_lists",
            "price_list_rules",
            "customer_retention",
        ]
    }

    fn sync_entities(&self) -> &'static [crate::core::sync::SyncEntity] {
        sync::ENTITIES
    }

    fn jobs(&self) -> Vec<Handler> {
        vec![Handler::new(retention::JOB, |ctx| {
            retention::job(ctx).boxed()
        })]
    }

    fn schedules(&self) -> Vec<ScheduledJob> {
        vec![ScheduledJob {
            name: "customer_retention",
            job: retention::JOB,
            payload: serde_json::json!({}),
        }]
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        use Access::Permission;
        use http::{customers, price_lists, privacy};
        OpenApiRouter::new()
            .routes(declare(Permission(WRITE), routes!(customers::create)))
            .routes(declare(Permission(READ), routes!(customers::list)))
            .routes(declare(Permission(ERASE), routes!(privacy::retention)))
            .routes(declare(Permission(READ), routes!(customers::get)))
            .routes(declare(Permission(WRITE), routes!(customers::update)))
            .routes(declare(Permission(WRITE), routes!(customers::delete)))
            .routes(declare(Permission(READ), routes!(customers::history)))
            .routes(declare(Permission(READ), routes!(customers::prices)))
            .routes(declare(Permission(EXPORT), routes!(privacy::export)))
            .routes(declare(Permission(ERASE), routes!(privacy::erase)))
            .routes(declare(
                Permission(PRICE_LISTS),
                routes!(price_lists::create),
            ))
            .routes(declare(Permission(READ), routes!(price_lists::list)))
            .routes(declare(Permission(READ), routes!(price_lists::get)))
            .routes(declare(
                Permission(PRICE_LISTS),
                routes!(price_lists::update),
            ))
            .routes(declare(
                Permission(PRICE_LISTS),
                routes!(price_lists::delete),
            ))
    }
}
