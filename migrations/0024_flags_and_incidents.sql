-- Issue 30: suspicious-pattern flags and incident notes (administration.incidents).

-- A rule that fired for a cashier's business day. `key` tells hits of one rule apart on one day
-- (the document a per-document rule fired on; empty for per-day rules), so a rule evaluated
-- again never raises the same flag twice.
CREATE TABLE flags (
    id            uuid        PRIMARY KEY,
    rule          text        NOT NULL CHECK (rule ~ '^[a-z][a-z_]{0,63}$'),
    user_id       uuid        NOT NULL REFERENCES users (id),
    business_date date        NOT NULL,
    key           text        NOT NULL DEFAULT '',
    details       jsonb       NOT NULL,
    document_ids  uuid[]      NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL,
    UNIQUE (rule, user_id, business_date, key)
);
CREATE INDEX flags_by_time ON flags (created_at, id);

-- Notes on what happened, append-only: a later note amends an earlier one, never edits it.
CREATE TABLE incidents (
    id           uuid        PRIMARY KEY,
    title        text        NOT NULL CHECK (length(btrim(title)) BETWEEN 1 AND 200),
    body         text        NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    flag_ids     uuid[]      NOT NULL DEFAULT '{}',
    document_ids uuid[]      NOT NULL DEFAULT '{}',
    amends       uuid        REFERENCES incidents (id),
    created_by   uuid        NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL
);
CREATE INDEX incidents_by_time ON incidents (created_at, id);

CREATE FUNCTION notes_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% are append-only (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'P0001';
END
$$;
CREATE TRIGGER incidents_append_only BEFORE UPDATE OR DELETE ON incidents
    FOR EACH ROW EXECUTE FUNCTION notes_are_append_only();
CREATE TRIGGER flags_append_only BEFORE UPDATE OR DELETE ON flags
    FOR EACH ROW EXECUTE FUNCTION notes_are_append_only();

INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'administration.incidents.read'), ('manager', 'administration.incidents.read'),
               ('auditor', 'administration.incidents.read'),
               ('super_admin', 'administration.incidents.write'), ('manager', 'administration.incidents.write'),
               ('auditor', 'administration.incidents.write')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON flags, incidents FROM plugpos_app;
    END IF;
END
$$;
