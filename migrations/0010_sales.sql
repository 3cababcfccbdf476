-- operations.sales: completed sales (immutable), their lines, payments and tax buckets, the
-- gap-free receipt counters, and the idempotency keys of creates (core).

-- Creates that carry an Idempotency-Key: the first request's body hash and what it created.
-- Kept at least 7 days (pruning is a job; until it exists, keys are kept).
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea       NOT NULL,
    resource_id  uuid        NOT NULL,
    user_id      uuid        REFERENCES users (id),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (scope, key)
);

-- The last receipt number used per register and (business-timezone) year. The row is locked by
-- the sale that takes a number until it commits, so a rolled-back sale gives its number back.
CREATE TABLE receipt_counters (
    register_id uuid   NOT NULL REFERENCES registers (id),
    year        int    NOT NULL,
    last_number bigint NOT NULL CHECK (last_number > 0),
    PRIMARY KEY (register_id, year)
);

CREATE TABLE sales (
    id                 uuid          PRIMARY KEY,
    register_id        uuid          NOT NULL REFERENCES registers (id),
    cash_session_id    uuid          NOT NULL REFERENCES cash_sessions (id),
    cashier_id         uuid          NOT NULL REFERENCES users (id),
    receipt_year       int           NOT NULL,
    receipt_seq        bigint        NOT NULL,
    receipt_number     text          NOT NULL,
    status             text          NOT NULL CHECK (status IN ('completed')),
    currency           char(3)       NOT NULL,
    prices_include_tax boolean       NOT NULL,
    net                numeric(14,4) NOT NULL,
    tax                numeric(14,4) NOT NULL,
    total              numeric(14,4) NOT NULL CHECK (total >= 0),
    cash_rounding      numeric(14,4) NOT NULL DEFAULT 0,
    change_due         numeric(14,4) NOT NULL CHECK (change_due >= 0),
    created_at         timestamptz   NOT NULL,
    UNIQUE (register_id, receipt_year, receipt_seq)
);
CREATE UNIQUE INDEX sales_receipt_number_key ON sales (receipt_number);
-- Few indexes: every one is paid by every sale. Lists by register use the receipt key above;
-- by cashier, the time index with a filter.
CREATE INDEX sales_by_time ON sales (created_at, id);
CREATE INDEX sales_by_session ON sales (cash_session_id);

CREATE TABLE sale_lines (
    sale_id          uuid          NOT NULL REFERENCES sales (id),
    line_no          int           NOT NULL CHECK (line_no > 0),
    product_id       uuid          NOT NULL REFERENCES products (id),
    -- What the receipt showed, kept even when the product changes later.
    sku              text          NOT NULL,
    name             text          NOT NULL,
    quantity         numeric(14,3) NOT NULL CHECK (quantity > 0),
    catalog_price    numeric(14,4) NOT NULL,
    unit_price       numeric(14,4) NOT NULL CHECK (unit_price >= 0),
    discount         numeric(14,4) NOT NULL CHECK (discount >= 0),
    total            numeric(14,4) NOT NULL CHECK (total >= 0),
    tax_class_id     uuid          NOT NULL REFERENCES tax_classes (id),
    tax_rate         numeric(7,6)  NOT NULL,
    PRIMARY KEY (sale_id, line_no)
);
CREATE INDEX sale_lines_by_product ON sale_lines (product_id);

CREATE TABLE sale_payments (
    sale_id  uuid          NOT NULL REFERENCES sales (id),
    line_no  int           NOT NULL CHECK (line_no > 0),
    method   text          NOT NULL CHECK (method IN ('cash', 'card', 'voucher', 'other')),
    amount   numeric(14,4) NOT NULL CHECK (amount > 0),
    PRIMARY KEY (sale_id, line_no)
);

CREATE TABLE sale_taxes (
    sale_id uuid          NOT NULL REFERENCES sales (id),
    rate    numeric(7,6)  NOT NULL,
    net     numeric(14,4) NOT NULL,
    tax     numeric(14,4) NOT NULL,
    gross   numeric(14,4) NOT NULL,
    PRIMARY KEY (sale_id, rate)
);

-- A completed sale is immutable: its fiscal fields never change and nothing of it is deleted.
-- Voids and returns are new documents.
CREATE FUNCTION sales_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (Nested: PL/pgSQL does not short-circuit, and only `sales` has these columns.)
    IF TG_TABLE_NAME = 'sales' AND TG_OP = 'UPDATE' THEN
        IF (NEW.id, NEW.register_id, NEW.cash_session_id, NEW.cashier_id, NEW.receipt_year, NEW.receipt_seq,
            NEW.receipt_number, NEW.status, NEW.currency, NEW.prices_include_tax, NEW.net, NEW.tax, NEW.total,
            NEW.cash_rounding, NEW.change_due, NEW.created_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.register_id, OLD.cash_session_id, OLD.cashier_id, OLD.receipt_year, OLD.receipt_seq,
            OLD.receipt_number, OLD.status, OLD.currency, OLD.prices_include_tax, OLD.net, OLD.tax, OLD.total,
            OLD.cash_rounding, OLD.change_due, OLD.created_at) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'completed sales are immutable (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'P0001';
END
$$;
CREATE TRIGGER sales_immutable BEFORE UPDATE OR DELETE ON sales
    FOR EACH ROW EXECUTE FUNCTION sales_are_immutable();
CREATE TRIGGER sale_lines_immutable BEFORE UPDATE OR DELETE ON sale_lines
    FOR EACH ROW EXECUTE FUNCTION sales_are_immutable();
CREATE TRIGGER sale_payments_immutable BEFORE UPDATE OR DELETE ON sale_payments
    FOR EACH ROW EXECUTE FUNCTION sales_are_immutable();
CREATE TRIGGER sale_taxes_immutable BEFORE UPDATE OR DELETE ON sale_taxes
    FOR EACH ROW EXECUTE FUNCTION sales_are_immutable();
CREATE FUNCTION sales_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'completed sales are immutable (TRUNCATE on %)', TG_TABLE_NAME USING ERRCODE = 'P0001';
END
$$;
CREATE TRIGGER sales_no_truncate BEFORE TRUNCATE ON sales
    FOR EACH STATEMENT EXECUTE FUNCTION sales_refuse_truncate();
CREATE TRIGGER sale_lines_no_truncate BEFORE TRUNCATE ON sale_lines
    FOR EACH STATEMENT EXECUTE FUNCTION sales_refuse_truncate();
CREATE TRIGGER sale_payments_no_truncate BEFORE TRUNCATE ON sale_payments
    FOR EACH STATEMENT EXECUTE FUNCTION sales_refuse_truncate();
CREATE TRIGGER sale_taxes_no_truncate BEFORE TRUNCATE ON sale_taxes
    FOR EACH STATEMENT EXECUTE FUNCTION sales_refuse_truncate();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON sales, sale_lines, sale_payments, sale_taxes FROM plugpos_app;
    END IF;
END
$$;
