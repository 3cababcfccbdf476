//! `management.stock` for other plugs: taking sold goods off a location's stock.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::shared::ids::new_id;

/// The goods of several documents as the columns of the caller's `stock_in` CTE (see
/// [`TAKE_CTES`]): one movement per document and product, in the documents' order, each taking
/// the document's whole quantity of that product.
#[derive(Debug, Default)]
pub struct TakeColumns {
    pub product_id: Vec<Uuid>,
    pub location_id: Vec<Uuid>,
    /// Negative: what leaves the shelf.
    pub delta: Vec<Decimal>,
    pub movement_id: Vec<Uuid>,
    pub document_id: Vec<Uuid>,
    pub user_id: Vec<Uuid>,
}

impl TakeColumns {
    /// Adds what `document_id` takes off `location_id`: `lines` are (product, quantity) pairs, a
    /// product may appear more than once.
    pub fn push(
        &mut self,
        document_id: Uuid,
        location_id: Uuid,
        user_id: Uuid,
        lines: &[(Uuid, Decimal)],
    ) {
        let mut per_product: BTreeMap<Uuid, Decimal> = BTreeMap::new();
        for (product, quantity) in lines {
            *per_product.entry(*product).or_default() += *quantity;
        }
        for (product, quantity) in per_product {
            self.product_id.push(product);
            self.location_id.push(location_id);
            self.delta.push(-quantity);
            self.movement_id.push(new_id());
            self.document_id.push(document_id);
            self.user_id.push(user_id);
        }
    }
}

/// The part of a caller's [`AuditedStatement`](crate::core::audit::AuditedStatement) that takes
/// goods off stock. It reads the caller's CTE `stock_in(product_id, location_id, delta, movement_id, document_id, user_id,
/// reason_code, ord)` (the [`TakeColumns`] of the documents being written, `ord` their order),
/// updates each level once, in (product, location) order so that concurrent writers lock levels
/// in one order, writes one ledger movement per row, and defines `stock_after(document_id,
/// product_id, location_id, delta, quantity_after, ord)`: each movement with the level right after
/// it (the final level less the movements after it in `ord`), as if the documents had been
/// recorded one by one, for the documents' audit records. Levels may go negative: a sale is never
/// refused because the shelf count is wrong.
pub const TAKE_CTES: &str = "stock_levels_up AS (INSERT INTO stock_levels AS l (product_id, location_id, quantity) \
       SELECT product_id, location_id, sum(delta) FROM stock_in GROUP BY product_id, location_id ORDER BY product_id, location_id \
       ON CONFLICT (product_id, location_id) DO UPDATE \
         SET quantity = l.quantity + EXCLUDED.quantity, version = l.version + 1, updated_at = now() \
       RETURNING l.product_id, l.location_id, l.quantity), \
     stock_after AS (SELECT m.document_id, m.product_id, m.location_id, m.delta, m.movement_id, m.user_id, m.reason_code, m.ord, \
         up.quantity - COALESCE(sum(m.delta) OVER (PARTITION BY m.product_id, m.location_id ORDER BY m.ord DESC \
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS quantity_after \
       FROM stock_in m JOIN stock_levels_up up USING (product_id, location_id)), \
     stock_moved AS (INSERT INTO stock_movements (id, product_id, location_id, quantity_delta, quantity_after, reason_code, document_id, user_id) \
       SELECT movement_id, product_id, location_id, delta, quantity_after, reason_code, document_id, user_id FROM stock_after)";
