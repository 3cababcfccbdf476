-- operations.returns: what each sale's returns refunded so far per tax rate, kept as a running
-- total beside `returned_quantities` (the returns writer reads both by key, under the sale's
-- lock, to price the next return's tax share; summing the sale's returns each time scanned the
-- returns table whenever PostgreSQL planned that sum for a small one). Voids do not count here:
-- a voided sale takes no returns, and a sale with returns cannot be voided.
CREATE TABLE returned_taxes (
    sale_id  uuid          NOT NULL REFERENCES sales (id),
    rate     numeric(7,6)  NOT NULL,
    -- Refunded at this rate so far (positive).
    net      numeric(14,4) NOT NULL CHECK (net >= 0),
    gross    numeric(14,4) NOT NULL CHECK (gross >= 0),
    PRIMARY KEY (sale_id, rate)
);

INSERT INTO returned_taxes (sale_id, rate, net, gross)
SELECT d.original_sale_id, t.rate, -sum(t.net), -sum(t.gross)
  FROM returns d, unnest(d.tax_rates, d.tax_nets, d.tax_grosses) AS t(rate, net, gross)
 WHERE d.kind = 'return' AND d.original_sale_id IS NOT NULL
 GROUP BY d.original_sale_id, t.rate;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE DELETE, TRUNCATE ON returned_taxes FROM plugpos_app;
    END IF;
END
$$;

-- For a statement that records several documents at once and must fail as a whole when one of
-- them no longer fits what it was computed against (a return's session closed, its sale's books
-- changed meanwhile): `SELECT refuse_statement(...) FROM <what does not fit>` raises a check
-- violation named `constraint_name`, which the writer reads to decide what to do.
CREATE FUNCTION refuse_statement(constraint_name text, message text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION '%', message USING ERRCODE = 'check_violation', CONSTRAINT = constraint_name;
END
$$;
