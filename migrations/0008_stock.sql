-- management.stock: quantity on hand per product and location, and the movements that changed it.

CREATE TABLE stock_levels (
    product_id  uuid          NOT NULL REFERENCES products (id),
    location_id uuid          NOT NULL REFERENCES locations (id),
    -- May go negative: a sale is never refused because the shelf count is wrong.
    quantity    numeric(14,3) NOT NULL DEFAULT 0,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now(),
    version     bigint        NOT NULL DEFAULT 1,
    PRIMARY KEY (product_id, location_id)
);
CREATE INDEX stock_levels_by_location ON stock_levels (location_id);

-- The stock ledger: every change of a level, with why and who (adjustments) or which document (sales).
CREATE TABLE stock_movements (
    id             uuid          PRIMARY KEY,
    product_id     uuid          NOT NULL REFERENCES products (id),
    location_id    uuid          NOT NULL REFERENCES locations (id),
    quantity_delta numeric(14,3) NOT NULL CHECK (quantity_delta <> 0),
    quantity_after numeric(14,3) NOT NULL,
    reason_code    text          NOT NULL CHECK (reason_code ~ '^[a-z][a-z0-9_]{0,63}$'),
    note           text          CHECK (length(note) <= 500),
    -- The document that caused it (a sale), if any.
    document_id    uuid,
    user_id        uuid          REFERENCES users (id),
    created_at     timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX stock_movements_by_product ON stock_movements (product_id, location_id, created_at);

-- The ledger is history: the server may add to it, never rewrite it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON stock_movements FROM plugpos_app;
    END IF;
END
$$;
