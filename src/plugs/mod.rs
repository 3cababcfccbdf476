//! Domain modules, grouped by plug: operations, management, administration.
//!
//! Plugs depend on `core` and `shared`, never the reverse; `main` hands [`modules`] to core.
//! A plug uses another plug only through that plug's `api` module, and only when one of its
//! modules declares the dependency.

pub mod administration;
pub mod management;
pub mod operations;

use std::sync::Arc;

use crate::core::modules::Module;

/// Every module of every plug, in registration order.
pub fn modules() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(administration::places::Places),
        Arc::new(management::catalog::Catalog),
        Arc::new(management::stock::Stock),
        Arc::new(management::purchasing::Purchasing),
        Arc::new(operations::approvals::Approvals),
        Arc::new(management::customers::Customers),
        Arc::new(operations::cash::Cash),
        Arc::new(operations::sales::Sales),
        Arc::new(operations::returns::Returns),
        Arc::new(operations::receipts::Receipts),
        Arc::new(administration::closings::Closings),
        Arc::new(administration::incidents::Incidents),
        Arc::new(management::reports::Reports),
    ]
}
