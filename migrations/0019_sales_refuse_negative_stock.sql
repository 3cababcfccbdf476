-- The feature switch sales.allow_negative_stock (issue 29). Off, a sale that would take a
-- tracked product below zero at its location is refused. The check runs in the statement
-- trigger that already proves each line's sale (0017): a line's stock_after is the level right
-- after it, computed under the level's row lock, so concurrent sales of the last item cannot
-- both pass. The setting is only read when a line does go below zero.
CREATE OR REPLACE FUNCTION sale_lines_come_with_their_sale() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sale uuid;
    short uuid;
BEGIN
    FOR sale IN SELECT DISTINCT sale_id FROM new_lines LOOP
        PERFORM 1 FROM sales WHERE id = sale AND xmin = pg_current_xact_id()::xid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a line must be recorded with its sale, in the transaction that records the sale; a completed sale cannot gain lines'
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'sale_lines_with_their_sale';
        END IF;
    END LOOP;
    SELECT product_id INTO short FROM new_lines WHERE stock_after < 0 LIMIT 1;
    IF short IS NOT NULL
       AND EXISTS (SELECT 1 FROM settings WHERE key = 'sales.allow_negative_stock' AND value = 'false'::jsonb) THEN
        RAISE EXCEPTION 'not enough stock'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'sale_lines_stock_not_negative', DETAIL = short::text;
    END IF;
    RETURN NULL;
END
$$;
