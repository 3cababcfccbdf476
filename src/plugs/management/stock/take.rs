//! Taking goods off stock inside another module's audited statement (a sale's): the statement
//! part and its input columns, offered to other plugs through `management::api::stock`.

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::core::audit::AuditedPart;

/// The goods of several documents as the columns of the caller's `stock_in` CTE (see
/// [`TAKE_CTES`]): one row per document line that takes a tracked product off stock, in the
/// documents' order.
#[derive(Debug, Default)]
pub struct TakeColumns {
    pub product_id: Vec<Uuid>,
    pub location_id: Vec<Uuid>,
    /// Negative: what leaves the shelf.
    pub delta: Vec<Decimal>,
    pub document_id: Vec<Uuid>,
    pub line_no: Vec<i32>,
}

impl TakeColumns {
    /// Adds what `document_id` takes off `location_id`: `lines` are (line number, product,
    /// quantity); a product may appear on more than one line.
    pub fn push(&mut self, document_id: Uuid, location_id: Uuid, lines: &[(i32, Uuid, Decimal)]) {
        for &(line_no, product, quantity) in lines {
            self.product_id.push(product);
            self.location_id.push(location_id);
            self.delta.push(-quantity);
            self.document_id.push(document_id);
            self.line_no.push(line_no);
        }
    }
}

/// The part of a caller's [`AuditedStatement`](crate::core::audit::AuditedStatement) that takes
/// goods off stock. It reads the caller's CTE `stock_in(product_id, location_id, delta,
/// document_id, line_no, ord)` (the [`TakeColumns`] of the documents being written, `ord` their
/// order), updates each level once, in (product, location) order so that concurrent writers lock
/// levels in one order, and defines `stock_after(document_id, line_no, product_id, location_id,
/// delta, quantity_after, ord)`: each line with the level right after it (the final level less
/// the lines after it in `ord`), as if the documents had been recorded one by one. The caller
/// records each row as its document line's movement (a sale: the line's `stock_after`, which the
/// `stock_ledger` view shows beside `stock_movements`) and in the documents' audit records.
/// Levels may go negative: a sale is never refused because the shelf count is wrong.
pub const TAKE_CTES: AuditedPart = AuditedPart::new(
    "stock_levels_up AS (INSERT INTO stock_levels AS l (product_id, location_id, quantity) \
       SELECT product_id, location_id, sum(delta) FROM stock_in GROUP BY product_id, location_id ORDER BY product_id, location_id \
       ON CONFLICT (product_id, location_id) DO UPDATE \
         SET quantity = l.quantity + EXCLUDED.quantity, version = l.version + 1, updated_at = now() \
       RETURNING l.product_id, l.location_id, l.quantity), \
     stock_after AS (SELECT m.document_id, m.line_no, m.product_id, m.location_id, m.delta, m.ord, \
         up.quantity - COALESCE(sum(m.delta) OVER (PARTITION BY m.product_id, m.location_id ORDER BY m.ord DESC \
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS quantity_after \
       FROM stock_in m JOIN stock_levels_up up USING (product_id, location_id))",
    0,
    &["stock_levels_up", "stock_after"],
)
.reading(&["stock_in"]);
