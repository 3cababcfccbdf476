-- Issue 30: returns and voids (operations.returns), and no-sale drawer opens (operations.cash).
--
-- A return or a void is a document of its own, never a change to the sale: its own number in
-- the register's correction series (`return_counters`, gap-free per register and year like the
-- receipts), negative totals and tax buckets that mirror the sale's rates, what was refunded by
-- method, and its lines. Like a sale it never changes once written.

CREATE TABLE return_counters (
    register_id uuid   NOT NULL REFERENCES registers (id),
    year        int    NOT NULL,
    last_number bigint NOT NULL CHECK (last_number > 0),
    PRIMARY KEY (register_id, year)
);

CREATE TABLE returns (
    id                 uuid          PRIMARY KEY,
    kind               text          NOT NULL CHECK (kind IN ('return', 'void')),
    register_id        uuid          NOT NULL REFERENCES registers (id),
    cash_session_id    uuid          NOT NULL REFERENCES cash_sessions (id),
    cashier_id         uuid          NOT NULL REFERENCES users (id),
    -- NULL: a return without a receipt.
    original_sale_id   uuid          REFERENCES sales (id),
    number_year        int           NOT NULL,
    number_seq         bigint        NOT NULL,
    number             text          NOT NULL UNIQUE,
    currency           char(3)       NOT NULL,
    prices_include_tax boolean       NOT NULL,
    net                numeric(14,4) NOT NULL CHECK (net <= 0),
    tax                numeric(14,4) NOT NULL CHECK (tax <= 0),
    total              numeric(14,4) NOT NULL CHECK (total <= 0),
    -- A void gives back the cash the sale took (its rounding included): cash_rounding mirrors it.
    cash_rounding      numeric(14,4) NOT NULL DEFAULT 0,
    refund_methods     text[]        NOT NULL,
    refund_amounts     numeric(14,4)[] NOT NULL,
    tax_rates          numeric(7,6)[]  NOT NULL,
    tax_nets           numeric(14,4)[] NOT NULL,
    tax_amounts        numeric(14,4)[] NOT NULL,
    tax_grosses        numeric(14,4)[] NOT NULL,
    reason_code        text          NOT NULL CHECK (reason_code ~ '^[a-z][a-z_]{0,31}$'),
    approval_ref       text,
    approved_by        uuid          REFERENCES users (id),
    location_id        uuid          NOT NULL REFERENCES locations (id),
    request_hash       bytea,
    created_at         timestamptz   NOT NULL,
    UNIQUE (register_id, number_year, number_seq),
    CHECK (kind = 'return' OR original_sale_id IS NOT NULL),
    CHECK (cardinality(refund_methods) = cardinality(refund_amounts)
           AND refund_methods <@ ARRAY['cash', 'card', 'voucher', 'other']
           AND 0 < ALL (refund_amounts)),
    CHECK (cardinality(tax_rates) = cardinality(tax_nets) AND cardinality(tax_rates) = cardinality(tax_amounts)
           AND cardinality(tax_rates) = cardinality(tax_grosses))
);
-- A sale is voided at most once.
CREATE UNIQUE INDEX returns_one_void_per_sale ON returns (original_sale_id) WHERE kind = 'void';
CREATE INDEX returns_by_sale ON returns (original_sale_id);
CREATE INDEX returns_by_session ON returns (cash_session_id);
CREATE INDEX returns_by_time ON returns (created_at, id);

CREATE TABLE return_lines (
    return_id     uuid          NOT NULL REFERENCES returns (id),
    line_no       int           NOT NULL CHECK (line_no > 0),
    -- The sale's line it gives back (NULL without a receipt).
    sale_line_no  int,
    product_id    uuid          NOT NULL REFERENCES products (id),
    sku           text          NOT NULL,
    name          text          NOT NULL,
    quantity      numeric(14,3) NOT NULL CHECK (quantity > 0),
    unit_price    numeric(14,4) NOT NULL CHECK (unit_price >= 0),
    total         numeric(14,4) NOT NULL CHECK (total <= 0),
    tax_rate      numeric(7,6)  NOT NULL,
    -- Back on the shelf (true) or written off as damaged (false).
    restock       boolean       NOT NULL,
    PRIMARY KEY (return_id, line_no)
);

-- How much of each sale line was given back so far: the row is locked by the return that adds
-- to it, so racing returns of one line queue, and the CHECK refuses more than was sold.
CREATE TABLE returned_quantities (
    sale_id  uuid          NOT NULL REFERENCES sales (id),
    line_no  int           NOT NULL,
    sold     numeric(14,3) NOT NULL CHECK (sold > 0),
    returned numeric(14,3) NOT NULL,
    PRIMARY KEY (sale_id, line_no),
    CONSTRAINT returned_not_above_sold CHECK (returned > 0 AND returned <= sold)
);

CREATE FUNCTION returns_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'returns and voids are immutable (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'P0001';
END
$$;
CREATE TRIGGER returns_immutable BEFORE UPDATE OR DELETE ON returns
    FOR EACH ROW EXECUTE FUNCTION returns_are_immutable();
CREATE TRIGGER return_lines_immutable BEFORE UPDATE OR DELETE ON return_lines
    FOR EACH ROW EXECUTE FUNCTION returns_are_immutable();
CREATE TRIGGER returns_no_truncate BEFORE TRUNCATE ON returns
    FOR EACH STATEMENT EXECUTE FUNCTION returns_are_immutable();
CREATE TRIGGER return_lines_no_truncate BEFORE TRUNCATE ON return_lines
    FOR EACH STATEMENT EXECUTE FUNCTION returns_are_immutable();

-- A line is accepted only in the transaction that inserted its return or void (as sale lines
-- with their sale, 0016/0017): a stored correction cannot gain lines later.
CREATE FUNCTION return_lines_come_with_their_return() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doc uuid;
BEGIN
    FOR doc IN SELECT DISTINCT return_id FROM new_lines LOOP
        PERFORM 1 FROM returns WHERE id = doc AND xmin = pg_current_xact_id()::xid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a line must be recorded with its return or void, in the transaction that records it'
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'return_lines_with_their_return';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER return_lines_with_their_return AFTER INSERT ON return_lines
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION return_lines_come_with_their_return();

-- operations.cash: a drawer opened without a sale is recorded as a movement of kind no_sale
-- (amount 0), counted in the X report.
ALTER TABLE cash_movements DROP CONSTRAINT cash_movements_kind_check;
ALTER TABLE cash_movements DROP CONSTRAINT cash_movements_amount_check;
ALTER TABLE cash_movements ADD CONSTRAINT cash_movements_kind_amount_check
    CHECK ((kind IN ('in', 'out') AND amount > 0) OR (kind = 'no_sale' AND amount = 0));

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON returns, return_lines FROM plugpos_app;
        REVOKE DELETE, TRUNCATE ON returned_quantities FROM plugpos_app;
    END IF;
END
$$;
