//! `management.stock` for other plugs: taking sold goods off a location's stock (the part of a
//! caller's audited statement that does it, and the columns that feed it).

pub use crate::plugs::management::stock::put_back::{
    ComingBack, LevelAfter, PUT_BACK_PART, PutBackColumns, levels_after_json, put_back,
};
pub use crate::plugs::management::stock::take::{TAKE_CTES, TakeColumns};

/// When the earliest stock movement (not a sale's line) at `locations` in `[from, to)` was
/// recorded, if any.
pub async fn first_movement_at(
    conn: &mut sqlx::PgConnection,
    locations: &[uuid::Uuid],
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT min(created_at) FROM stock_movements WHERE location_id = ANY($1) AND created_at >= $2 AND created_at < $3",
    )
    .bind(locations)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await
}

/// Adds `quantity` of `product_id` at `location_id` as goods received by `document_id` (a goods
/// receipt), with its ledger movement `received`; answers the level after.
#[allow(clippy::too_many_arguments)]
pub async fn receive_goods(
    tx: &mut crate::core::audit::AuditedTx,
    product_id: uuid::Uuid,
    location_id: uuid::Uuid,
    quantity: rust_decimal::Decimal,
    document_id: uuid::Uuid,
    note: &str,
    user_id: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<rust_decimal::Decimal, sqlx::Error> {
    use crate::plugs::management::stock::store;
    store::lock_level(tx, product_id, location_id).await?;
    let after = store::add_to_level(tx, product_id, location_id, quantity).await?;
    store::insert_movement(
        tx,
        &store::NewMovement {
            id: crate::shared::ids::new_id(),
            product_id,
            location_id,
            delta: quantity,
            quantity_after: after,
            reason_code: "received",
            note: Some(note),
            document_id: Some(document_id),
            user_id,
            at,
        },
    )
    .await?;
    Ok(after)
}

/// A product's stock over every location.
pub async fn on_hand(
    conn: &mut sqlx::PgConnection,
    product_id: uuid::Uuid,
) -> Result<rust_decimal::Decimal, sqlx::Error> {
    let total: Option<rust_decimal::Decimal> =
        sqlx::query_scalar("SELECT sum(quantity) FROM stock_levels WHERE product_id = $1")
            .bind(product_id)
            .fetch_one(conn)
            .await?;
    Ok(total.unwrap_or_default())
}

/// For the movements report: per reason, the movements other than sale lines in a period.
pub use crate::plugs::management::stock::reports::movements_by_reason;
