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
    let after: Vec<(Uuid, Decimal)> = sqlx::query_as(
        "INSERT INTO stock_levels AS l (product_id, location_id, quantity) \
         SELECT d.product_id, $3, d.delta FROM unnest($1::uuid[], $2::numeric[]) AS d(product_id, delta) \
         ON CONFLICT (product_id, location_id) DO UPDATE \
           SET quantity = l.quantity + EXCLUDED.quantity, version = l.version + 1, updated_at = now() \
         RETURNING l.product_id, l.quantity",
    )
    .bind(&products)
    .bind(&deltas)
    .bind(location_id)
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
    let ids: Vec<Uuid> = changes.iter().map(|_| new_id()).collect();
    let after: Vec<Decimal> = changes.iter().map(|c| c.quantity).collect();
    let changed: Vec<Uuid> = changes.iter().map(|c| c.product_id).collect();
    let changed_deltas: Vec<Decimal> = changes.iter().map(|c| c.delta).collect();
    sqlx::query(
        "INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, document_id, user_id) \
         SELECT m.id, m.product_id, $4, m.delta, m.after, $5, $6, $7 \
         FROM unnest($1::uuid[], $2::uuid[], $3::numeric[], $8::numeric[]) AS m(id, product_id, delta, after)",
    )
    .bind(&ids)
    .bind(&changed)
    .bind(&changed_deltas)
    .bind(location_id)
    .bind(reason_code)
    .bind(document_id)
    .bind(user_id)
    .bind(&after)
    .execute(&mut **tx)
    .await?;
    Ok(changes)
}
