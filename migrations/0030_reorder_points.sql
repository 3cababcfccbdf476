-- management.stock: reorder points. A level may carry a minimum and a quantity to reorder;
-- when a change (a sale, a transfer, a count...) takes the level from at or above its minimum to
-- below it, the database says so on channel plugpos_stock_low at commit, and the server
-- publishes stock.low on the stock topic. The trigger's condition is checked without a lookup,
-- so levels without a minimum cost the sales nothing.

ALTER TABLE stock_levels
    ADD COLUMN min_quantity     numeric(14,3) CHECK (min_quantity >= 0),
    ADD COLUMN reorder_quantity numeric(14,3) CHECK (reorder_quantity > 0),
    ADD COLUMN reorder_version  bigint        NOT NULL DEFAULT 0;

CREATE FUNCTION stock_level_fell_below_minimum() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('plugpos_stock_low', json_build_object(
        'product_id', NEW.product_id, 'location_id', NEW.location_id,
        'quantity', NEW.quantity::text, 'min_quantity', NEW.min_quantity::text,
        'reorder_quantity', NEW.reorder_quantity::text)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER stock_levels_low AFTER UPDATE OF quantity ON stock_levels
    FOR EACH ROW
    WHEN (NEW.min_quantity IS NOT NULL AND OLD.quantity >= NEW.min_quantity AND NEW.quantity < NEW.min_quantity)
    EXECUTE FUNCTION stock_level_fell_below_minimum();

CREATE INDEX stock_levels_low ON stock_levels (location_id) WHERE min_quantity IS NOT NULL;
