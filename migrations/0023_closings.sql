-- Issue 30: the Z closings (administration.closings) and closed periods.
--
-- A closing is computed from the documents themselves, signed with the instance's ed25519 key
-- and chained: each stores the hash of the one before. `signed_message` is the exact JSON text
-- that was hashed and signed (docs/api.md, "Closings"), so an outsider checks it byte for byte.
-- Once written it never changes.
CREATE TABLE closings (
    id             uuid        PRIMARY KEY,
    seq            bigint      NOT NULL UNIQUE CHECK (seq > 0),
    kind           text        NOT NULL CHECK (kind IN ('day', 'month', 'year')),
    branch_id      uuid        NOT NULL REFERENCES branches (id),
    -- The day; the first day of the month; the first day of the year.
    business_date  date        NOT NULL,
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL CHECK (period_end > period_start),
    signed_message text        NOT NULL,
    hash           bytea       NOT NULL CHECK (length(hash) = 32),
    previous_hash  bytea       NOT NULL CHECK (length(previous_hash) = 32),
    public_key     bytea       NOT NULL CHECK (length(public_key) = 32),
    signature      bytea       NOT NULL CHECK (length(signature) = 64),
    created_by     uuid        NOT NULL REFERENCES users (id),
    created_at     timestamptz NOT NULL,
    UNIQUE (branch_id, kind, business_date)
);
CREATE INDEX closings_by_branch ON closings (branch_id, kind, period_end);

CREATE FUNCTION closings_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'closings are immutable (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'P0001';
END
$$;
CREATE TRIGGER closings_immutable BEFORE UPDATE OR DELETE ON closings
    FOR EACH ROW EXECUTE FUNCTION closings_are_immutable();
CREATE TRIGGER closings_no_truncate BEFORE TRUNCATE ON closings
    FOR EACH STATEMENT EXECUTE FUNCTION closings_are_immutable();

-- Closed periods refuse writes: no sale, return or void, cash movement or stock movement may be
-- dated before the end of its branch's last closed day, and no cash session closed then (its
-- close is what a day's cash figures count; it may be opened, but nothing can be recorded in it
-- until the next business day), whoever writes it (the server, or SQL as any role). One check
-- per statement (the rows it wrote), cheap while a branch has no closing.
CREATE FUNCTION refuse_closed_period() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM closings WHERE kind = 'day') THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME IN ('sales', 'returns') THEN
        PERFORM 1 FROM new_rows n JOIN registers r ON r.id = n.register_id
         WHERE n.created_at < (SELECT max(c.period_end) FROM closings c WHERE c.kind = 'day' AND c.branch_id = r.branch_id)
         LIMIT 1;
    ELSIF TG_TABLE_NAME = 'cash_sessions' THEN
        PERFORM 1 FROM new_rows n JOIN registers r ON r.id = n.register_id
         WHERE n.closed_at < (SELECT max(c.period_end) FROM closings c WHERE c.kind = 'day' AND c.branch_id = r.branch_id)
         LIMIT 1;
    ELSIF TG_TABLE_NAME = 'cash_movements' THEN
        PERFORM 1 FROM new_rows n JOIN cash_sessions s ON s.id = n.cash_session_id JOIN registers r ON r.id = s.register_id
         WHERE n.created_at < (SELECT max(c.period_end) FROM closings c WHERE c.kind = 'day' AND c.branch_id = r.branch_id)
         LIMIT 1;
    ELSE
        PERFORM 1 FROM new_rows n JOIN locations l ON l.id = n.location_id
         WHERE n.created_at < (SELECT max(c.period_end) FROM closings c WHERE c.kind = 'day' AND c.branch_id = l.branch_id)
         LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'the business day this is dated in is closed'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'period_closed';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER sales_period_open AFTER INSERT ON sales
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_closed_period();
CREATE TRIGGER returns_period_open AFTER INSERT ON returns
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_closed_period();
CREATE TRIGGER cash_movements_period_open AFTER INSERT ON cash_movements
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_closed_period();
CREATE TRIGGER stock_movements_period_open AFTER INSERT ON stock_movements
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_closed_period();
CREATE TRIGGER cash_sessions_closed_in_open_period AFTER UPDATE ON cash_sessions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_closed_period();

-- A closing waits for every write of a document in flight and holds new ones back until it
-- commits (then they see it, and the trigger above refuses those dated inside it). The app role
-- may not lock these tables in SHARE mode itself (it lacks UPDATE on most), hence a function
-- owned by the migrations' role.
CREATE FUNCTION lock_documents_for_closing() RETURNS void LANGUAGE sql SECURITY DEFINER
    SET search_path = public AS $$
    LOCK TABLE sales, returns, cash_movements, stock_movements IN SHARE MODE;
$$;
REVOKE ALL ON FUNCTION lock_documents_for_closing() FROM PUBLIC;

INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'administration.closings.create'), ('manager', 'administration.closings.create'),
               ('super_admin', 'administration.closings.read'), ('manager', 'administration.closings.read'),
               ('accountant', 'administration.closings.read'), ('auditor', 'administration.closings.read')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON closings FROM plugpos_app;
        GRANT EXECUTE ON FUNCTION lock_documents_for_closing() TO plugpos_app;
    END IF;
END
$$;
