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
