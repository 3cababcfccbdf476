-- Issue 28, findings 4, 10 and 17.

-- A sale keeps the digest of the request that recorded it: a retry that reuses the sale's
-- client-made id with another body (or by another cashier) is refused (409 sale.id_conflict)
-- instead of silently answered with the first sale. Sales recorded before stay NULL.
ALTER TABLE sales ADD COLUMN request_hash bytea;

-- Idempotency keys are scoped to the cashier and register (the server stores
-- '<user>/<register>:<sha256 of the key>'); keys stored before are rewritten the same way, so a
-- retry that spans the upgrade still finds its sale.
UPDATE idempotency_keys k
   SET key = k.user_id::text || '/' || s.register_id::text || ':' || encode(sha256(convert_to(k.key, 'UTF8')), 'hex')
  FROM sales s
 WHERE k.scope = 'sales' AND s.id = k.resource_id AND k.user_id IS NOT NULL;

-- A completed sale cannot gain lines: lines are inserted only in the transaction that inserts
-- their sale (the sales writer's one statement). Checked once per statement, after it.
CREATE FUNCTION sale_lines_come_with_their_sale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_lines l JOIN sales s ON s.id = l.sale_id
               WHERE s.xmin <> pg_current_xact_id()::xid) THEN
        RAISE EXCEPTION 'a completed sale cannot gain lines; corrections are new documents'
            USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'sale_lines_with_their_sale';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER sale_lines_with_their_sale AFTER INSERT ON sale_lines
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION sale_lines_come_with_their_sale();

-- A cash session belongs to the cashier who opened it; managers keep acting on anyone's
-- (operations.cash.manage_any) and readers keep seeing anyone's X report
-- (operations.cash.report_any). Built-in roles of an instance set up before get them here;
-- a new instance gets them at setup from the module's declaration.
INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('manager', 'operations.cash.manage_any'), ('manager', 'operations.cash.report_any'),
               ('accountant', 'operations.cash.report_any'), ('auditor', 'operations.cash.report_any')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;
