//! `administration.places`: the shop's branches, the locations that hold stock, and the
//! registers (tills) that sell. Setup creates one of each.

pub mod routes;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Module, ModulePermission};
use crate::core::state::AppState;

pub const READ: &str = "administration.places.read";
pub const MANAGE: &str = "administration.places.manage";

const PERMISSIONS: &[ModulePermission] = &[
    ModulePermission {
        name: READ,
        description: "List branches, locations and registers",
        roles: &["cashier", "manager", "accountant", "auditor"],
    },
    ModulePermission {
        name: MANAGE,
        description: "Create branches, locations and registers",
        roles: &[],
    },
];

/// The module.
pub struct Places;

impl Module for Places {
    fn id(&self) -> &'static str {
        "administration.places"
    }

    fn version(&self) -> &'static str {
        "1.0.0"
    }

    fn description(&self) -> &'static str {
        "Branches, locations and registers"
    }

    fn permissions(&self) -> &'static [ModulePermission] {
        PERMISSIONS
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(
                Access::Permission(READ),
                routes!(routes::list_branches),
            ))
            .routes(declare(
                Access::Permission(MANAGE),
                routes!(routes::create_branch),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(routes::list_locations),
            ))
            .routes(declare(
                Access::Permission(MANAGE),
                routes!(routes::create_location),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(routes::list_registers),
            ))
            .routes(declare(
                Access::Permission(MANAGE),
                routes!(routes::create_register),
            ))
    }
}
