-- management.catalog: products and their barcodes.

-- Substring search on names and SKUs (trusted extension: the database owner may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE products (
    id           uuid          PRIMARY KEY,
    sku          text          NOT NULL CHECK (sku ~ '^[A-Za-z0-9._/-]{1,64}$'),
    name         text          NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    -- Lower-cased, accents removed, name and SKU: what search matches (computed by plugpos).
    search_text  text          NOT NULL,
    price        numeric(14,4) NOT NULL CHECK (price >= 0),
    cost_price   numeric(14,4) CHECK (cost_price >= 0),
    tax_class_id uuid          NOT NULL REFERENCES tax_classes (id),
    category_id  uuid          REFERENCES categories (id),
    track_stock  boolean       NOT NULL DEFAULT true,
    active       boolean       NOT NULL DEFAULT true,
    created_at   timestamptz   NOT NULL DEFAULT now(),
    updated_at   timestamptz   NOT NULL DEFAULT now(),
    version      bigint        NOT NULL DEFAULT 1,
    archived_at  timestamptz
);
CREATE UNIQUE INDEX products_sku_key ON products (lower(sku));
CREATE INDEX products_search ON products USING gin (search_text gin_trgm_ops);
-- Prefix matches (what a cashier types first) come straight from a btree range scan.
CREATE INDEX products_search_prefix ON products (search_text text_pattern_ops) WHERE archived_at IS NULL;

-- A barcode identifies one product, across all products.
CREATE TABLE product_barcodes (
    barcode     text PRIMARY KEY CHECK (barcode ~ '^[0-9A-Za-z-]{1,64}$'),
    product_id  uuid NOT NULL REFERENCES products (id) ON DELETE CASCADE
);
CREATE INDEX product_barcodes_by_product ON product_barcodes (product_id);
