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

/// The goods one document (a sale) takes off one location's stock.
#[derive(Debug, Clone, Copy)]
pub struct Take<'a> {
    pub document_id: Uuid,
    pub location_id: Uuid,
    pub user_id: Uuid,
    /// (product, quantity) pairs; a product may appear more than once.
    pub lines: &'a [(Uuid, Decimal)],
}

/// Takes the goods of several documents off stock in the caller's audited transaction, in one
/// statement, and writes one ledger movement per document and product with `reason_code`
/// (`sale`). Returns, per document in the given order, its level changes (each movement's
/// `quantity` is the level right after it, as if the documents had been recorded one by one), for
/// the documents' audit records. Levels may go negative: a sale is never refused because the shelf
/// count is wrong.
pub async fn take_for_documents(
    tx: &mut AuditedTx,
    takes: &[Take<'_>],
    reason_code: &str,
) -> Result<Vec<Vec<LevelChange>>, sqlx::Error> {
    let mut docs = Vec::new();
    let mut products = Vec::new();
    let mut locations = Vec::new();
    let mut deltas = Vec::new();
    let mut document_ids = Vec::new();
    let mut users = Vec::new();
    // One level row per product and location, in key order: writers lock levels in the same order.
    let mut totals: BTreeMap<(Uuid, Uuid), Decimal> = BTreeMap::new();
    for (doc, take) in takes.iter().enumerate() {
        let mut per_product: BTreeMap<Uuid, Decimal> = BTreeMap::new();
        for (product, quantity) in take.lines {
            *per_product.entry(*product).or_default() += *quantity;
        }
        for (product, quantity) in per_product {
            docs.push(i32::try_from(doc).unwrap_or(i32::MAX));
            products.push(product);
            locations.push(take.location_id);
            deltas.push(-quantity);
            document_ids.push(take.document_id);
            users.push(take.user_id);
            *totals.entry((product, take.location_id)).or_default() -= quantity;
        }
    }
    let mut changes = vec![Vec::new(); takes.len()];
    if totals.is_empty() {
        return Ok(changes);
    }
    let movement_ids: Vec<Uuid> = products.iter().map(|_| new_id()).collect();
    // One round trip: the levels, then each movement with the level after it (the final level
    // less the movements recorded after it in this batch), and the ledger rows.
    let rows: Vec<(i32, Uuid, Uuid, Decimal, Decimal)> = sqlx::query_as(
        "WITH m AS (SELECT * FROM unnest($1::int[], $2::uuid[], $3::uuid[], $4::numeric[], $5::uuid[], $6::uuid[], $7::uuid[]) \
                    WITH ORDINALITY AS m(doc, product_id, location_id, delta, movement_id, document_id, user_id, ord)), \
         up AS (INSERT INTO stock_levels AS l (product_id, location_id, quantity) \
                SELECT * FROM unnest($8::uuid[], $9::uuid[], $10::numeric[]) \
                ON CONFLICT (product_id, location_id) DO UPDATE \
                  SET quantity = l.quantity + EXCLUDED.quantity, version = l.version + 1, updated_at = now() \
                RETURNING l.product_id, l.location_id, l.quantity), \
         a AS (SELECT m.*, up.quantity - COALESCE(sum(m.delta) OVER (PARTITION BY m.product_id, m.location_id ORDER BY m.ord DESC \
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS quantity_after \
               FROM m JOIN up USING (product_id, location_id)), \
         mv AS (INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, document_id, user_id) \
                SELECT movement_id, product_id, location_id, delta, quantity_after, $11, document_id, user_id FROM a) \
         SELECT doc, product_id, location_id, delta, quantity_after FROM a ORDER BY ord",
    )
    .bind(&docs)
    .bind(&products)
    .bind(&locations)
    .bind(&deltas)
    .bind(&movement_ids)
    .bind(&document_ids)
    .bind(&users)
    .bind(totals.keys().map(|k| k.0).collect::<Vec<_>>())
    .bind(totals.keys().map(|k| k.1).collect::<Vec<_>>())
    .bind(totals.values().copied().collect::<Vec<_>>())
    .bind(reason_code)
    .fetch_all(&mut **tx)
    .await?;
    for (doc, product_id, location_id, delta, quantity) in rows {
        if let Some(list) = usize::try_from(doc).ok().and_then(|d| changes.get_mut(d)) {
            list.push(LevelChange {
                product_id,
                location_id,
                delta,
                quantity,
            });
        }
    }
    Ok(changes)
}
