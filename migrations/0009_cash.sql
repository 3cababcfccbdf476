-- operations.cash: register codes (they start receipt numbers), cash sessions and cash movements.

-- Every register gets a short code; new registers get the next R<n> unless one is given.
CREATE SEQUENCE register_code_seq;
ALTER TABLE registers ADD COLUMN code text;
UPDATE registers r SET code = 'R' || nextval('register_code_seq')
  FROM (SELECT id FROM registers ORDER BY created_at, id) ordered WHERE ordered.id = r.id;
ALTER TABLE registers
    ALTER COLUMN code SET DEFAULT ('R' || nextval('register_code_seq')),
    ALTER COLUMN code SET NOT NULL,
    ADD CONSTRAINT registers_code_check CHECK (code ~ '^[A-Z0-9]{1,12}$');
CREATE UNIQUE INDEX registers_code_key ON registers (code);

CREATE TABLE cash_sessions (
    id              uuid          PRIMARY KEY,
    register_id     uuid          NOT NULL REFERENCES registers (id),
    status          text          NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    opening_float   numeric(14,4) NOT NULL CHECK (opening_float >= 0),
    opened_by       uuid          NOT NULL REFERENCES users (id),
    opened_at       timestamptz   NOT NULL,
    closed_by       uuid          REFERENCES users (id),
    closed_at       timestamptz,
    expected_cash   numeric(14,4),
    counted_cash    numeric(14,4) CHECK (counted_cash >= 0),
    variance        numeric(14,4),
    variance_reason text          CHECK (length(variance_reason) <= 500),
    created_at      timestamptz   NOT NULL DEFAULT now(),
    updated_at      timestamptz   NOT NULL DEFAULT now(),
    version         bigint        NOT NULL DEFAULT 1,
    CHECK ((status = 'open') = (closed_at IS NULL)),
    CHECK (status = 'open' OR (expected_cash IS NOT NULL AND counted_cash IS NOT NULL AND variance IS NOT NULL))
);
-- One open session per register, even when two opens race.
CREATE UNIQUE INDEX cash_sessions_one_open ON cash_sessions (register_id) WHERE status = 'open';
CREATE INDEX cash_sessions_by_register ON cash_sessions (register_id, opened_at);

-- A closed session is final.
CREATE FUNCTION cash_sessions_closed_is_final() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.status = 'closed' THEN
        RAISE EXCEPTION 'cash session % is closed and cannot change', OLD.id USING ERRCODE = 'P0001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER cash_sessions_closed_is_final BEFORE UPDATE OR DELETE ON cash_sessions
    FOR EACH ROW EXECUTE FUNCTION cash_sessions_closed_is_final();

CREATE TABLE cash_movements (
    id              uuid          PRIMARY KEY,
    cash_session_id uuid          NOT NULL REFERENCES cash_sessions (id),
    kind            text          NOT NULL CHECK (kind IN ('in', 'out')),
    amount          numeric(14,4) NOT NULL CHECK (amount > 0),
    reason          text          NOT NULL CHECK (length(btrim(reason)) BETWEEN 1 AND 500),
    user_id         uuid          NOT NULL REFERENCES users (id),
    created_at      timestamptz   NOT NULL
);
CREATE INDEX cash_movements_by_session ON cash_movements (cash_session_id);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON cash_movements FROM plugpos_app;
        GRANT USAGE ON SEQUENCE register_code_seq TO plugpos_app;
    END IF;
END
$$;
