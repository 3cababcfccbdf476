-- Issue 35: the offline push. A till that lost the server numbers its documents in its register's
-- series and queues them; on reconnect it pushes them in order (`POST /api/v1/sync/push`).
--
-- sync_pushed: every document a push recorded, by the till's own id, written in the transaction
-- that records the document: a document pushed again is found here and answered with the same
-- result (exactly once). It keeps the till's `created_at` beside the server's `recorded_at` (the
-- document itself is dated by the server, like every late document, see Closings in docs/api.md).
CREATE TABLE sync_pushed (
    id              uuid        PRIMARY KEY,
    device_id       uuid        NOT NULL REFERENCES devices (id),
    kind            text        NOT NULL,
    request_hash    bytea       NOT NULL,
    result          jsonb       NOT NULL,
    till_created_at timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    pushed_by       uuid        NOT NULL REFERENCES users (id)
);
CREATE INDEX sync_pushed_by_device ON sync_pushed (device_id, recorded_at);

-- sync_conflicts: what a pushed document did that the server would have refused online (a price
-- changed meanwhile, a product archived, stock below zero...). The document stands ("what the
-- till did is what happened"); a manager looks at the entry and resolves it with a note.
CREATE TABLE sync_conflicts (
    id              uuid        PRIMARY KEY,
    device_id       uuid        NOT NULL REFERENCES devices (id),
    document_type   text        NOT NULL,
    document_id     uuid        NOT NULL,
    kind            text        NOT NULL,
    detail          jsonb       NOT NULL,
    created_at      timestamptz NOT NULL,
    resolved_at     timestamptz,
    resolved_by     uuid        REFERENCES users (id),
    resolution_note text        CHECK (length(btrim(resolution_note)) BETWEEN 1 AND 1000),
    CHECK ((resolved_at IS NULL) = (resolved_by IS NULL) AND (resolved_at IS NULL) = (resolution_note IS NULL))
);
CREATE INDEX sync_conflicts_newest ON sync_conflicts (created_at DESC, id DESC);
CREATE INDEX sync_conflicts_of_document ON sync_conflicts (document_id);

-- A resolved conflict stays resolved: only the one transition from open to resolved is allowed.
CREATE FUNCTION sync_conflicts_resolve_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.resolved_at IS NOT NULL
       OR (NEW.id, NEW.device_id, NEW.document_type, NEW.document_id, NEW.kind, NEW.detail, NEW.created_at)
          IS DISTINCT FROM (OLD.id, OLD.device_id, OLD.document_type, OLD.document_id, OLD.kind, OLD.detail, OLD.created_at) THEN
        RAISE EXCEPTION 'a conflict log entry is only ever resolved, once'
            USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'sync_conflicts_resolve_once';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sync_conflicts_resolve_once BEFORE UPDATE ON sync_conflicts
    FOR EACH ROW EXECUTE FUNCTION sync_conflicts_resolve_once();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON sync_pushed FROM plugpos_app;
        REVOKE DELETE, TRUNCATE ON sync_conflicts FROM plugpos_app;
    END IF;
END
$$;

-- What the till sold is sold: a pushed sale that takes stock below zero is recorded (and logged
-- as a conflict) even with the switch sales.allow_negative_stock off. The push marks its
-- transactions with the transaction-local setting plugpos.offline_push; nothing else sets it.
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
       AND current_setting('plugpos.offline_push', true) IS DISTINCT FROM 'on'
       AND EXISTS (SELECT 1 FROM settings WHERE key = 'sales.allow_negative_stock' AND value = 'false'::jsonb) THEN
        RAISE EXCEPTION 'not enough stock'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'sale_lines_stock_not_negative', DETAIL = short::text;
    END IF;
    RETURN NULL;
END
$$;

-- Built-in roles of an instance set up before get the new permission (a new instance gets it at
-- setup from the declarations): managers see and resolve the conflict log.
INSERT INTO role_permissions (role_id, permission)
SELECT r.id, 'administration.devices.conflicts'
  FROM roles r
 WHERE r.builtin AND r.name IN ('super_admin', 'manager')
ON CONFLICT DO NOTHING;
