//! `administration.places` for other plugs: does a location or register exist, which location a
//! business with one has, and a register as a sale needs it.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::core::state::AppState;
use crate::plugs::administration::places::store;

pub use crate::plugs::administration::places::store::SaleRegister;

/// Is `id` a live location?
pub async fn location_exists(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    store::location_exists(conn, id).await
}

/// The business's location when it has exactly one (`None` with none or several).
pub async fn sole_location(conn: &mut PgConnection) -> Result<Option<Uuid>, sqlx::Error> {
    store::sole_location(conn).await
}

/// The branch of live location `id` (`None`: no such live location).
pub async fn branch_of_location(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    store::branch_of_location(conn, id).await
}

/// Is `id` a live register?
pub async fn register_exists(conn: &mut PgConnection, id: Uuid) -> Result<bool, sqlx::Error> {
    store::register_exists(conn, id).await
}

/// Registers kept in memory at most.
const REGISTER_CACHE: usize = 10_000;

/// Register `id` as a sale needs it (its receipt code and the location it sells from; `None`
/// when there is no such live register), kept in memory until a register changes (see
/// [`crate::core::db::changes`]).
pub async fn register_for_sale(
    state: &AppState,
    id: Uuid,
) -> Result<Option<SaleRegister>, sqlx::Error> {
    let found = state
        .cache::<Uuid, Option<SaleRegister>>(REGISTER_CACHE)
        .get_or_read(id, || async {
            let mut conn = state.pool().acquire().await?;
            store::sale_register(&mut conn, id).await.map(Some)
        })
        .await?;
    Ok(found.flatten())
}

pub use crate::plugs::administration::places::store::{BranchPlaces, RegisterCard};

/// Register `id` (deleted or not) with its code, name and branch.
pub async fn register_card(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<RegisterCard>, sqlx::Error> {
    store::register_card(conn, id).await
}

/// Live branch `id` with its registers and locations (deleted ones included).
pub async fn branch_places(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<BranchPlaces>, sqlx::Error> {
    store::branch_places(conn, id).await
}

/// The business's branch when it has exactly one (`None` with none or several).
pub async fn sole_branch(conn: &mut PgConnection) -> Result<Option<Uuid>, sqlx::Error> {
    store::sole_branch(conn).await
}

/// For reports: `code name` of each of `registers` (deleted ones included).
pub async fn register_labels(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    store::register_labels(conn, ids).await
}

/// For reports: the name of each of `locations` (deleted ones included).
pub async fn location_labels(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    store::location_labels(conn, ids).await
}
