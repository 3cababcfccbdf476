-- Issue 30: discounts with a kind and a reason, and the approvals a sale used.
--
-- A line's `discount` stays what all discounts took off it (its own and its share of the
-- sale's); `discount_detail` says which discounts those were (kind, value, reason, amount, per
-- line and for the sale) and why prices differ from the catalog's; `discount_total` is their sum,
-- for the closings; `approval_ref` the approvals used. All are fiscal fields: the immutability
-- trigger covers them.
ALTER TABLE sales
    ADD COLUMN discount_total  numeric(14,4) NOT NULL DEFAULT 0 CHECK (discount_total >= 0),
    ADD COLUMN discount_detail jsonb CHECK (discount_detail IS NULL OR jsonb_typeof(discount_detail) = 'object'),
    ADD COLUMN approval_ref    text;

-- Sales recorded before discounts had kinds: their line discounts are amounts with reason `other`.
ALTER TABLE sales DISABLE TRIGGER sales_immutable;
UPDATE sales s SET discount_total = d.total
  FROM (SELECT sale_id, sum(discount) AS total FROM sale_lines GROUP BY sale_id HAVING sum(discount) > 0) d
 WHERE d.sale_id = s.id;
ALTER TABLE sales ENABLE TRIGGER sales_immutable;

CREATE OR REPLACE FUNCTION sales_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (Nested: PL/pgSQL does not short-circuit, and only `sales` has these columns.)
    IF TG_TABLE_NAME = 'sales' AND TG_OP = 'UPDATE' THEN
        IF (NEW.id, NEW.register_id, NEW.cash_session_id, NEW.cashier_id, NEW.receipt_year, NEW.receipt_seq,
            NEW.receipt_number, NEW.status, NEW.currency, NEW.prices_include_tax, NEW.net, NEW.tax, NEW.total,
            NEW.cash_rounding, NEW.change_due, NEW.created_at, NEW.location_id, NEW.payment_methods,
            NEW.payment_amounts, NEW.tax_rates, NEW.tax_nets, NEW.tax_amounts, NEW.tax_grosses,
            NEW.discount_total, NEW.discount_detail, NEW.approval_ref)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.register_id, OLD.cash_session_id, OLD.cashier_id, OLD.receipt_year, OLD.receipt_seq,
            OLD.receipt_number, OLD.status, OLD.currency, OLD.prices_include_tax, OLD.net, OLD.tax, OLD.total,
            OLD.cash_rounding, OLD.change_due, OLD.created_at, OLD.location_id, OLD.payment_methods,
            OLD.payment_amounts, OLD.tax_rates, OLD.tax_nets, OLD.tax_amounts, OLD.tax_grosses,
            OLD.discount_total, OLD.discount_detail, OLD.approval_ref) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'completed sales are immutable (% on %)', TG_OP, TG_TABLE_NAME USING ERRCODE = 'P0001';
END
$$;
