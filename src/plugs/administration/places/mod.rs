//! `administration.places`: the shop's branches, the locations that hold stock, and the
//! registers (tills) that sell. Setup creates one of each.

pub mod http;
pub mod store;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use anyhow::Context;
use futures_util::FutureExt;
use serde_json::json;

use crate::core::audit::AuditedTx;
use crate::core::auth::access::{Access, declare};
use crate::core::modules::{Module, ModulePermission, Seed, Seeded};
use crate::core::state::AppState;
use crate::shared::ids::new_id;

pub(crate) const MODULE: &str = "administration.places";

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
        MODULE
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

    fn tables(&self) -> &'static [&'static str] {
        &["branches", "locations", "registers"]
    }

    fn sync_entities(&self) -> &'static [crate::core::sync::SyncEntity] {
        store::SYNC_ENTITIES
    }

    fn seed(&self) -> Option<Seed> {
        Some(|tx| seed(tx).boxed())
    }

    fn routes(&self) -> OpenApiRouter<AppState> {
        OpenApiRouter::new()
            .routes(declare(
                Access::Permission(READ),
                routes!(http::list_branches),
            ))
            .routes(declare(
                Access::Permission(MANAGE),
                routes!(http::create_branch),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::list_locations),
            ))
            .routes(declare(
                Access::Permission(MANAGE),
                routes!(http::create_location),
            ))
            .routes(declare(
                Access::Permission(READ),
                routes!(http::list_registers),
            ))
            .routes(declare(
                Access::Permission(MANAGE),
                routes!(http::create_register),
            ))
    }
}

/// Setup's defaults: a main branch, its shop floor and one register selling from it.
async fn seed(tx: &mut AuditedTx) -> anyhow::Result<Vec<Seeded>> {
    let (branch, location, register) = (new_id(), new_id(), new_id());
    store::insert_branch(tx, branch, "Main branch")
        .await
        .context("cannot create the default branch")?;
    store::insert_location(tx, location, branch, "Shop floor")
        .await
        .context("cannot create the default location")?;
    store::insert_register(tx, register, branch, location, "Register 1", None)
        .await
        .context("cannot create the default register")?;
    let seeded = |name, kind: store::Kind, id, place: &str| Seeded {
        name,
        entity: kind.entity(),
        action: kind.action(),
        id,
        after: json!({ "name": place }),
    };
    Ok(vec![
        seeded("branch_id", store::Kind::Branch, branch, "Main branch"),
        seeded("location_id", store::Kind::Location, location, "Shop floor"),
        seeded("register_id", store::Kind::Register, register, "Register 1"),
    ])
}
