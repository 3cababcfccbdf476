-- management.stock: stock counts. A count of one location (all its products, a category, or a
-- list) is open while counted quantities are entered; each line keeps the book quantity at the
-- time it was last counted, so posting turns counted - book into the movement and sales made
-- during the count are not lost. Posted counts are history.

CREATE TABLE stock_counts (
    id           uuid        PRIMARY KEY,
    location_id  uuid        NOT NULL REFERENCES locations (id),
    scope        text        NOT NULL CHECK (scope IN ('all', 'category', 'products')),
    category_id  uuid        REFERENCES categories (id),
    status       text        NOT NULL CHECK (status IN ('open', 'posted', 'cancelled')),
    note         text        CHECK (length(note) <= 500),
    created_by   uuid        NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL,
    posted_by    uuid        REFERENCES users (id),
    posted_at    timestamptz,
    cancelled_by uuid        REFERENCES users (id),
    cancelled_at timestamptz,
    updated_at   timestamptz NOT NULL,
    version      bigint      NOT NULL DEFAULT 1,
    CHECK ((scope = 'category') = (category_id IS NOT NULL))
);
CREATE INDEX stock_counts_by_time ON stock_counts (created_at DESC, id DESC);

-- The products of a count whose scope is a list.
CREATE TABLE stock_count_products (
    count_id   uuid NOT NULL REFERENCES stock_counts (id),
    product_id uuid NOT NULL REFERENCES products (id),
    PRIMARY KEY (count_id, product_id)
);

CREATE TABLE stock_count_lines (
    count_id   uuid          NOT NULL REFERENCES stock_counts (id),
    product_id uuid          NOT NULL REFERENCES products (id),
    counted    numeric(14,3) NOT NULL CHECK (counted >= 0),
    -- The level when the line was last counted: the count's difference is counted - book.
    book       numeric(14,3) NOT NULL,
    scans      int           NOT NULL DEFAULT 1 CHECK (scans > 0),
    counted_by uuid          NOT NULL REFERENCES users (id),
    counted_at timestamptz   NOT NULL,
    PRIMARY KEY (count_id, product_id)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE DELETE, TRUNCATE ON stock_counts, stock_count_products, stock_count_lines FROM plugpos_app;
    END IF;
END
$$;
