-- management.stock, after review:
-- - one open count per location: two overlapping counts would each post the same difference;
-- - the ledger gets a stable order: the movement's id (or the sale's) after the time, since a
--   count's or a transfer's movements share their time and document;
-- - a sent or received transfer gets no new lines either.

CREATE UNIQUE INDEX stock_counts_one_open ON stock_counts (location_id) WHERE status = 'open';

CREATE OR REPLACE VIEW stock_ledger AS
    SELECT m.product_id, m.location_id, m.quantity_delta, m.quantity_after, m.reason_code, m.note,
           m.document_id, NULL::int AS line_no, m.user_id, m.created_at, m.id AS order_id
      FROM stock_movements m
    UNION ALL
    SELECT l.product_id, s.location_id, -l.quantity, l.stock_after, 'sale', NULL,
           s.id, l.line_no, s.cashier_id, s.created_at, s.id
      FROM sale_lines l JOIN sales s ON s.id = l.sale_id
     WHERE l.stock_after IS NOT NULL;

DROP TRIGGER stock_transfer_lines_frozen ON stock_transfer_lines;
CREATE TRIGGER stock_transfer_lines_frozen BEFORE INSERT OR UPDATE OR DELETE ON stock_transfer_lines
    FOR EACH ROW EXECUTE FUNCTION stock_transfer_lines_frozen();
