//! `management.stock` for other plugs: taking sold goods off a location's stock.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::core::audit::AuditedTx;
use crate::shared::ids::new_id;

/// A stock level after a change, for the caller's audit record.
#[derive(Debug, Clone, Serialize)]
pub struct LevelChange {
    pub product_id: Uuid,
    pub location_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub delta: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
}

/// Takes `lines` (product, quantity sold) off `location_id`'s stock in the caller's audited
/// transaction (whose audit record should carry the returned changes),
/// and writes the movements with `reason_code` (`sale`) and the document that caused them.
/// Levels may go negative: a sale is never refused because the shelf count is wrong.
pub async fn take_for_document(
    tx: &mut AuditedTx,
    location_id: Uuid,
    lines: &[(Uuid, Decimal)],
    reason_code: &str,
    document_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<LevelChange>, sqlx::Error> {
    // One row per product, in id order: concurrent sales lock levels in the same order.
    let mut totals: BTreeMap<Uuid, Decimal> = BTreeMap::new();
    for (product, quantity) in lines {
        *totals.entry(*product).or_default() += *quantity;
    }
    if totals.is_empty() {
        return Ok(Vec::new());
    }
    let products: Vec<Uuid> = totals.keys().copied().collect();
    let deltas: Vec<Decimal> = totals.values().map(|q| -*q).collect();
    let movement_ids: Vec<Uuid> = products.iter().map(|_| new_id()).collect();
    // One round trip: the levels and their ledger rows.
    let after: Vec<(Uuid, Decimal)> = sqlx::query_as(
        "WITH d AS (SELECT * FROM unnest($1::uuid[], $2::numeric[], $3::uuid[]) AS d(product_id, delta, movement_id)), \
         up AS (INSERT INTO stock_levels AS l (product_id, location_id, quantity) \
                SELECT d.product_id, $4, d.delta FROM d \
                ON CONFLICT (product_id, location_id) DO UPDATE \
                  SET quantity = l.quantity + EXCLUDED.quantity, version = l.version + 1, updated_at = now() \
                RETURNING l.product_id, l.quantity), \
         mv AS (INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, document_id, user_id) \
                SELECT d.movement_id, d.product_id, $4, d.delta, up.quantity, $5, $6, $7 FROM d JOIN up USING (product_id)) \
         SELECT product_id, quantity FROM up",
    )
    .bind(&products)
    .bind(&deltas)
    .bind(&movement_ids)
    .bind(location_id)
    .bind(reason_code)
    .bind(document_id)
    .bind(user_id)
    .fetch_all(&mut **tx)
    .await?;
    let changes: Vec<LevelChange> = after
        .into_iter()
        .map(|(product_id, quantity)| LevelChange {
            product_id,
            location_id,
            delta: -totals.get(&product_id).copied().unwrap_or_default(),
            quantity,
        })
        .collect();
    Ok(changes)
}
