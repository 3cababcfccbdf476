//! Goods coming back to a location with a document (a return, a void), inside the caller's
//! audited transaction: each line is a movement of the ledger naming its document. Goods that
//! come back damaged are recorded coming back and written off (`damaged`) at once, so the ledger
//! shows both and the level does not change.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use super::store::{NewMovement, add_to_level, insert_movement};
use crate::core::audit::AuditedTx;
use crate::shared::ids::new_id;

/// One document line that brings goods back.
#[derive(Debug, Clone, Copy)]
pub struct ComingBack {
    pub line_no: i32,
    pub product_id: Uuid,
    /// More than zero.
    pub quantity: Decimal,
    /// Back on the shelf; otherwise written off as damaged.
    pub restock: bool,
}

/// What a line did to its level (for the document's audit record).
#[derive(Debug, Clone, Serialize)]
pub struct LevelAfter {
    pub line_no: i32,
    pub product_id: Uuid,
    pub location_id: Uuid,
    pub reason_code: &'static str,
    #[serde(serialize_with = "super::store::three_decimals")]
    pub delta: Decimal,
    #[serde(serialize_with = "super::store::three_decimals")]
    pub quantity: Decimal,
}

/// Brings `lines` of `document_id` back to `location_id` (reason `reason`, e.g. `return`),
/// levels in product order (the order the sales writer locks them in).
pub async fn put_back(
    tx: &mut AuditedTx,
    document_id: Uuid,
    location_id: Uuid,
    lines: &[ComingBack],
    reason: &'static str,
    user_id: Uuid,
    at: DateTime<Utc>,
) -> Result<Vec<LevelAfter>, sqlx::Error> {
    let mut ordered: Vec<&ComingBack> = lines.iter().collect();
    ordered.sort_by_key(|l| (l.product_id, l.line_no));
    let mut after = Vec::with_capacity(lines.len());
    for line in ordered {
        let mut moves = vec![(reason, line.quantity)];
        if !line.restock {
            moves.push(("damaged", -line.quantity));
        }
        for (reason_code, delta) in moves {
            let quantity = add_to_level(tx, line.product_id, location_id, delta).await?;
            insert_movement(
                tx,
                &NewMovement {
                    id: new_id(),
                    product_id: line.product_id,
                    location_id,
                    delta,
                    quantity_after: quantity,
                    reason_code,
                    note: None,
                    document_id: Some(document_id),
                    user_id,
                    at,
                },
            )
            .await?;
            after.push(LevelAfter {
                line_no: line.line_no,
                product_id: line.product_id,
                location_id,
                reason_code,
                delta,
                quantity,
            });
        }
    }
    Ok(after)
}
