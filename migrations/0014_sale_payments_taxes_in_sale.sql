-- operations.sales: a sale's payments and tax buckets are part of its row.
--
-- Until now they were rows of their own tables (sale_payments, sale_taxes), each inserted with a
-- foreign-key check against its sale. Both are written once, with the sale, and never change, so
-- they are now arrays on the sale's row: they cannot exist without their sale nor be added to it
-- later, the immutability trigger covers them with the sale's other fiscal fields, and recording
-- a sale inserts two rows fewer (docs/PERFORMANCE.md, tenth look). `sale_payments` and
-- `sale_taxes` stay as views with the columns the tables had, so readers see the same relations.

-- Element i of each array is payment i (in the request's order), or the bucket of the i-th
-- rate (rates strictly ascending).
ALTER TABLE sales
    ADD COLUMN payment_methods text[]          NOT NULL DEFAULT '{}',
    ADD COLUMN payment_amounts numeric(14,4)[] NOT NULL DEFAULT '{}',
    ADD COLUMN tax_rates       numeric(7,6)[]  NOT NULL DEFAULT '{}',
    ADD COLUMN tax_nets        numeric(14,4)[] NOT NULL DEFAULT '{}',
    ADD COLUMN tax_amounts     numeric(14,4)[] NOT NULL DEFAULT '{}',
    ADD COLUMN tax_grosses     numeric(14,4)[] NOT NULL DEFAULT '{}';

-- The sales recorded so far get their rows' values, in one pass (each sale's row is written once:
-- about 11 s and 2.5 times the table's size until autovacuum reclaims the old rows, per 500,000 sales
-- here; docs/operations.md). The immutability trigger is off for this one statement, inside this
-- migration's transaction; nothing else of a sale changes.
ALTER TABLE sales DISABLE TRIGGER sales_immutable;
UPDATE sales s
   SET payment_methods = coalesce(x.methods, '{}'), payment_amounts = coalesce(x.amounts, '{}'),
       tax_rates = coalesce(x.rates, '{}'), tax_nets = coalesce(x.nets, '{}'),
       tax_amounts = coalesce(x.taxes, '{}'), tax_grosses = coalesce(x.grosses, '{}')
  FROM (SELECT coalesce(p.sale_id, t.sale_id) AS sale_id, p.methods, p.amounts, t.rates, t.nets, t.taxes, t.grosses
          FROM (SELECT sale_id, array_agg(method ORDER BY line_no) AS methods, array_agg(amount ORDER BY line_no) AS amounts
                  FROM sale_payments GROUP BY sale_id) p
          FULL JOIN (SELECT sale_id, array_agg(rate ORDER BY rate) AS rates, array_agg(net ORDER BY rate) AS nets,
                            array_agg(tax ORDER BY rate) AS taxes, array_agg(gross ORDER BY rate) AS grosses
                       FROM sale_taxes GROUP BY sale_id) t ON t.sale_id = p.sale_id) x
 WHERE x.sale_id = s.id;
ALTER TABLE sales ENABLE TRIGGER sales_immutable;

ALTER TABLE sales
    ALTER COLUMN payment_methods DROP DEFAULT,
    ALTER COLUMN payment_amounts DROP DEFAULT,
    ALTER COLUMN tax_rates DROP DEFAULT,
    ALTER COLUMN tax_nets DROP DEFAULT,
    ALTER COLUMN tax_amounts DROP DEFAULT,
    ALTER COLUMN tax_grosses DROP DEFAULT;

-- What the tables' columns and keys asked of each row, per element: one-dimensional arrays of
-- the same length per kind, no NULL element, a known method, a positive amount, and one bucket per
-- rate (rates strictly ascending). One short CHECK calling one PL/pgSQL function: PostgreSQL reads
-- a CHECK's expression tree again for every statement that inserts, so long expressions cost each
-- batch (docs/PERFORMANCE.md, tenth look), and the function's compiled body is kept per connection.
CREATE FUNCTION sale_payments_and_taxes_valid(methods text[], amounts numeric[], rates numeric[],
                                              nets numeric[], taxes numeric[], grosses numeric[])
    RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    n int := coalesce(cardinality(rates), 0);
BEGIN
    IF methods IS NULL OR amounts IS NULL OR rates IS NULL OR nets IS NULL OR taxes IS NULL OR grosses IS NULL
       OR coalesce(array_ndims(methods), 1) <> 1 OR coalesce(array_ndims(amounts), 1) <> 1
       OR coalesce(array_ndims(rates), 1) <> 1 OR coalesce(array_ndims(nets), 1) <> 1
       OR coalesce(array_ndims(taxes), 1) <> 1 OR coalesce(array_ndims(grosses), 1) <> 1
       OR cardinality(amounts) <> cardinality(methods)
       OR cardinality(nets) <> n OR cardinality(taxes) <> n OR cardinality(grosses) <> n
       OR array_position(methods, NULL) IS NOT NULL OR array_position(amounts, NULL) IS NOT NULL
       OR array_position(rates, NULL) IS NOT NULL OR array_position(nets, NULL) IS NOT NULL
       OR array_position(taxes, NULL) IS NOT NULL OR array_position(grosses, NULL) IS NOT NULL
       OR NOT methods <@ ARRAY['cash', 'card', 'voucher', 'other'] OR NOT 0 < ALL (amounts) THEN
        RETURN false;
    END IF;
    FOR i IN 2..n LOOP
        IF NOT rates[i - 1] < rates[i] THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$$;
ALTER TABLE sales ADD CONSTRAINT sales_payments_taxes_check CHECK (
    sale_payments_and_taxes_valid(payment_methods, payment_amounts, tax_rates, tax_nets, tax_amounts, tax_grosses));

-- The payments and tax buckets are fiscal fields like the others.
CREATE OR REPLACE FUNCTION sales_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (Nested: PL/pgSQL does not short-circuit, and only `sales` has these columns.)
    IF TG_TABLE_NAME = 'sales' AND TG_OP = 'UPDATE' THEN
        IF (NEW.id, NEW.register_id, NEW.cash_session_id, NEW.cashier_id, NEW.receipt_year, NEW.receipt_seq,
            NEW.receipt_number, NEW.status, NEW.currency, NEW.prices_include_tax, NEW.net, NEW.tax, NEW.total,
            NEW.cash_rounding, NEW.change_due, NEW.created_at, NEW.location_id, NEW.payment_methods,
            NEW.payment_amounts, NEW.tax_rates, NEW.tax_nets, NEW.tax_amounts, NEW.tax_grosses)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.register_id, OLD.cash_session_id, OLD.cashier_id, OLD.receipt_year, OLD.receipt_seq,
            OLD.receipt_number, OLD.status, OLD.currency, OLD.prices_include_tax, OLD.net, OLD.tax, OLD.total,
            OLD.cash_rounding, OLD.change_due, OLD.created_at, OLD.location_id, OLD.payment_methods,
            OLD.payment_amounts, OLD.tax_rates, OLD.tax_nets, OLD.tax_amounts, OLD.tax_grosses) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'completed sales are immutable (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'P0001';
END
$$;

DROP TABLE sale_payments, sale_taxes;

-- The same relations as before, read from the sales' rows (not updatable: a view over a join).
CREATE VIEW sale_payments AS
    SELECT s.id AS sale_id, p.line_no::int AS line_no, p.method, p.amount
      FROM sales s, unnest(s.payment_methods, s.payment_amounts) WITH ORDINALITY AS p(method, amount, line_no);
CREATE VIEW sale_taxes AS
    SELECT s.id AS sale_id, t.rate, t.net, t.tax, t.gross
      FROM sales s, unnest(s.tax_rates, s.tax_nets, s.tax_amounts, s.tax_grosses) AS t(rate, net, tax, gross);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        GRANT SELECT ON sale_payments, sale_taxes TO plugpos_app;
        REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON sale_payments, sale_taxes FROM plugpos_app;
    END IF;
END
$$;
