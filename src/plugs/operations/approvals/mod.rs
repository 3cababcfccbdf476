//! `operations.approvals`: a manager approves a sensitive action on the cashier's till without
//! logging the cashier out. The approval (`POST /api/v1/approvals`) is single-use, bound to its
//! action, scope (register, sale, largest amount) and the cashier who asked, and expires
//! (`approvals.expire_seconds`). The module that performs the action consumes it
//! (`operations::api::approvals::consume`) in the transaction that records the action, whose
//! audit record then carries the approval's reference.
//!
//! The rule every action follows: a caller who holds the action's permission acts alone; anyone
//! else needs an approval from someone who holds it (never themselves). A return without a
//! receipt always needs one, from a holder of `operations.returns.without_receipt`.

pub mod http;
pub mod store;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Dependency, Module};
use crate::core::settings::{DefaultValue, Setting, SettingType};
use crate::core::state::AppState;

pub(crate) const MODULE: &str = "operations.approvals";

/// The actions an approval may be given for (each is also the permission its approver needs).
pub const ACTIONS: &[&str] = APPROVERS.split_at(6).0;

/// Every permission that lets its holder approve with their PIN: the actions, then
/// [`WITHOUT_RECEIPT`].
const APPROVERS: [&str; 7] = [
    "operations.returns.create",
    "operations.sales.void",
    "operations.sales.price_override",
    "operations.sales.discount",
    "operations.cash.no_sale",
    "management.customers.erase",
    WITHOUT_RECEIPT,
];

/// The actions among [`ACTIONS`] done in the back office, not on a till: approved for a record
/// (`scope.customer_id`) rather than a register.
pub const BACK_OFFICE: &[&str] = &["management.customers.erase"];

/// What a return without a receipt also needs of its approver.
pub const WITHOUT_RECEIPT: &str = "operations.returns.without_receipt";

/// Seconds an approval stays usable.
pub const EXPIRE_SECONDS: &str = "approvals.expire_seconds";
pub const DEFAULT_EXPIRE_SECONDS: i64 = 120;

const SETTINGS: &[Setting] = &[Setting::new(
    EXPIRE_SECONDS,
    SettingType::Integer { min: 10, max: 3600 },
    DefaultValue::Integer(DEFAULT_EXPIRE_SECONDS),
    "Seconds an approval given on a till stays usable (it is single-use either way).",
)
.with_reason()];

const DEPENDENCIES: &[Dependency] = &[Dependency {
    id: "administration.places",
    requirement: "^1",
}];

/// The module.
pub struct Approvals;

impl Module for Approvals {
    fn id(&self) -> &'static str {
        MODULE
    }

    fn approver_permissions(&self) -> &'static [&'static str] {
        &APPROVERS
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "A second person's approval of returns, voids, discounts, price overrides and no-sale drawer opens"
    }

    fn dependencies(&self) -> &'static [Dependency] {
        DEPENDENCIES
    }

    fn settings(&self) -> &'static [Setting] {
        SETTINGS
    }

    fn tables(&self) -> &'static [&'static str] {
        &["approvals"]
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        // Any logged-in cashier may ask; the approver's own permissions decide.
        OpenApiRouter::new().routes(declare(Access::SelfService, routes!(http::approve)))
    }
}
