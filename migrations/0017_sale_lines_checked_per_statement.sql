-- Issue 28, finding 17, second design: the check that a line comes with its sale (0016) also
-- proves that the sale exists, once per statement and sale (one primary-key lookup), so it
-- replaces the foreign key's check of every line (a row trigger and a locking lookup each). Sales are never
-- deleted (sales_immutable, sales_no_truncate), so a line's sale stays there. Measured in
-- docs/PERFORMANCE.md: the trigger beside the foreign key cost the sales writer about 15 %.
CREATE OR REPLACE FUNCTION sale_lines_come_with_their_sale() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    sale uuid;
BEGIN
    -- One primary-key lookup per sale of the statement: a join of the new lines with sales may be
    -- planned as a scan of sales while the table is young (its first statistics say it is small),
    -- and that plan stays cached while sales grows (the benchmark's first minutes ran at half speed).
    FOR sale IN SELECT DISTINCT sale_id FROM new_lines LOOP
        PERFORM 1 FROM sales WHERE id = sale AND xmin = pg_current_xact_id()::xid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a line must be recorded with its sale, in the transaction that records the sale; a completed sale cannot gain lines'
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'sale_lines_with_their_sale';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
ALTER TABLE sale_lines DROP CONSTRAINT sale_lines_sale_id_fkey;

-- Idempotency keys of sales are stored as the SHA-256 (hex) of the form 0016 gave them
-- ('<user>/<register>:<sha256 of the key>'): keys that all began with the same 74 characters
-- made every comparison in the key index walk that prefix first.
UPDATE idempotency_keys SET key = encode(sha256(convert_to(key, 'UTF8')), 'hex')
 WHERE scope = 'sales' AND key ~ '^[0-9a-f-]{36}/[0-9a-f-]{36}:[0-9a-f]{64}$';
