//! Goods coming back to a location with a document (a return, a void), inside the caller's
//! audited transaction: each line is a movement of the ledger naming its document. Goods that
//! come back damaged are recorded coming back and written off (`damaged`) at once, so the ledger
//! shows both and the level does not change.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use super::store::{NewMovement, add_to_level, insert_movement};
use crate::core::audit::parts::{self, SqlJson};
use crate::core::audit::{AuditedPart, AuditedTx};
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
    let mut after = Vec::with_capacity(lines.len());
    for line in in_level_order(lines) {
        for (reason_code, delta) in moves(line, reason) {
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

/// `lines` in the order levels are locked in: by product (the sales writer's order), then line.
fn in_level_order(lines: &[ComingBack]) -> Vec<&ComingBack> {
    let mut ordered: Vec<&ComingBack> = lines.iter().collect();
    ordered.sort_by_key(|l| (l.product_id, l.line_no));
    ordered
}

/// The movements of one line: back with `reason`, and written off at once when damaged.
fn moves(line: &ComingBack, reason: &'static str) -> Vec<(&'static str, Decimal)> {
    let mut moves = vec![(reason, line.quantity)];
    if !line.restock {
        moves.push(("damaged", -line.quantity));
    }
    moves
}

/// The part of a caller's statement that brings several documents' goods back at once, like
/// [`put_back`]: its parameters are the columns of [`PutBackColumns`]. It updates each level
/// once, in (product, location) order (the order every writer locks levels in), inserts one
/// ledger row per movement with the level right after it, and defines
/// `stock_back_after(ord, quantity_after, ...)` per movement (`ord`: its position in the columns).
pub const PUT_BACK_PART: AuditedPart = AuditedPart::new(
    "stock_back AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::numeric[], $5::text[], $6::uuid[], \
         $7::int[], $8::uuid[]) WITH ORDINALITY AS m(id, product_id, location_id, delta, reason_code, document_id, line_no, user_id, ord)), \
     stock_levels_back AS (INSERT INTO stock_levels AS l (product_id, location_id, quantity) \
       SELECT product_id, location_id, sum(delta) FROM stock_back GROUP BY product_id, location_id ORDER BY product_id, location_id \
       ON CONFLICT (product_id, location_id) DO UPDATE \
         SET quantity = l.quantity + EXCLUDED.quantity, version = l.version + 1, updated_at = now() \
       RETURNING l.product_id, l.location_id, l.quantity), \
     stock_back_after AS (SELECT m.*, up.quantity - COALESCE(sum(m.delta) OVER (PARTITION BY m.product_id, m.location_id \
         ORDER BY m.ord DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS quantity_after \
       FROM stock_back m JOIN stock_levels_back up USING (product_id, location_id)), \
     stock_moved AS (INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, note, \
         user_id, created_at, document_id) \
       SELECT id, product_id, location_id, delta, quantity_after, reason_code, NULL, user_id, $now, document_id \
       FROM stock_back_after ORDER BY ord)",
    8,
    &[
        "stock_back",
        "stock_levels_back",
        "stock_back_after",
        "stock_moved",
    ],
);

/// The goods several documents bring back, as the parameters of [`PUT_BACK_PART`]: one row
/// per movement, each document's lines in level order.
#[derive(Debug, Default)]
pub struct PutBackColumns {
    pub id: Vec<Uuid>,
    pub product_id: Vec<Uuid>,
    pub location_id: Vec<Uuid>,
    pub delta: Vec<Decimal>,
    pub reason_code: Vec<&'static str>,
    pub document_id: Vec<Uuid>,
    pub line_no: Vec<i32>,
    pub user_id: Vec<Uuid>,
}

impl PutBackColumns {
    /// Adds the goods `lines` of `document_id` bring back to `location_id` (reason `reason`).
    pub fn push(
        &mut self,
        document_id: Uuid,
        location_id: Uuid,
        lines: &[ComingBack],
        reason: &'static str,
        user_id: Uuid,
    ) {
        for line in in_level_order(lines) {
            for (reason_code, delta) in moves(line, reason) {
                self.id.push(new_id());
                self.product_id.push(line.product_id);
                self.location_id.push(location_id);
                self.delta.push(delta);
                self.reason_code.push(reason_code);
                self.document_id.push(document_id);
                self.line_no.push(line.line_no);
                self.user_id.push(user_id);
            }
        }
    }
}

/// The SQL expression of the JSON array of document `document`'s movements (an expression of
/// the caller's row) in a statement with [`PUT_BACK_PART`], each as a [`LevelAfter`] serializes:
/// for the document's audit record.
pub fn levels_after_json(document: &str) -> String {
    parts::array(
        &parts::object(&[
            ("line_no", SqlJson::Number("m.line_no")),
            ("product_id", SqlJson::Plain("m.product_id")),
            ("location_id", SqlJson::Plain("m.location_id")),
            ("reason_code", SqlJson::Text("m.reason_code")),
            ("delta", SqlJson::Plain("round(m.delta, 3)")),
            ("quantity", SqlJson::Plain("round(m.quantity_after, 3)")),
        ]),
        "m.ord",
        &format!("FROM stock_back_after m WHERE m.document_id = {document}"),
    )
}
