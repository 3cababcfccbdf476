-- operations.sales: a sale's stock movements are its lines.
--
-- Until now every sale also wrote one stock_movements row per product (with three foreign-key
-- checks each), repeating what its lines already say. From here on a tracked line carries the
-- level of its product right after it (`stock_after`) and the sale carries the location it took
-- stock from, so the line is the movement; `stock_ledger` shows stock_movements (adjustments,
-- and the sales recorded before this migration) and those lines as one ledger.

-- Where the sale took its goods from: the register's location when it was recorded (a register
-- that moves later does not move its past sales). NULL for sales recorded before this migration,
-- whose movements are rows of stock_movements.
ALTER TABLE sales ADD COLUMN location_id uuid REFERENCES locations (id);
-- The product's level at the sale's location right after this line (a tracked product); NULL for
-- a product without stock tracking, and for lines recorded before this migration.
ALTER TABLE sale_lines ADD COLUMN stock_after numeric(14,3);

-- A sale's cash session is one of its own register's: one check (and a stronger one) instead of
-- two separate ones. Validating it reads the sales once.
ALTER TABLE cash_sessions ADD CONSTRAINT cash_sessions_id_register_key UNIQUE (id, register_id);
ALTER TABLE sales
    DROP CONSTRAINT sales_register_id_fkey,
    DROP CONSTRAINT sales_cash_session_id_fkey,
    ADD CONSTRAINT sales_cash_session_register_fkey
        FOREIGN KEY (cash_session_id, register_id) REFERENCES cash_sessions (id, register_id);

-- The new column is a fiscal field like the others.
CREATE OR REPLACE FUNCTION sales_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (Nested: PL/pgSQL does not short-circuit, and only `sales` has these columns.)
    IF TG_TABLE_NAME = 'sales' AND TG_OP = 'UPDATE' THEN
        IF (NEW.id, NEW.register_id, NEW.cash_session_id, NEW.cashier_id, NEW.receipt_year, NEW.receipt_seq,
            NEW.receipt_number, NEW.status, NEW.currency, NEW.prices_include_tax, NEW.net, NEW.tax, NEW.total,
            NEW.cash_rounding, NEW.change_due, NEW.created_at, NEW.location_id)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.register_id, OLD.cash_session_id, OLD.cashier_id, OLD.receipt_year, OLD.receipt_seq,
            OLD.receipt_number, OLD.status, OLD.currency, OLD.prices_include_tax, OLD.net, OLD.tax, OLD.total,
            OLD.cash_rounding, OLD.change_due, OLD.created_at, OLD.location_id) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'completed sales are immutable (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'P0001';
END
$$;

-- Every change of a stock level: the rows of stock_movements, and the tracked lines of the sales
-- recorded since this migration (`stock_after` set). One row per movement; a sale's rows have its
-- id as document_id and its cashier as user_id.
CREATE VIEW stock_ledger AS
    SELECT m.product_id, m.location_id, m.quantity_delta, m.quantity_after, m.reason_code, m.note,
           m.document_id, NULL::int AS line_no, m.user_id, m.created_at
      FROM stock_movements m
    UNION ALL
    SELECT l.product_id, s.location_id, -l.quantity, l.stock_after, 'sale', NULL,
           s.id, l.line_no, s.cashier_id, s.created_at
      FROM sale_lines l JOIN sales s ON s.id = l.sale_id
     WHERE l.stock_after IS NOT NULL;
