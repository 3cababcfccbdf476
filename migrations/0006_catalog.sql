-- management.catalog: tax classes and the category tree (products follow).

CREATE TABLE tax_classes (
    id          uuid         PRIMARY KEY,
    name        text         NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    -- A fraction: 0.19 is 19 %.
    rate        numeric(7,6) NOT NULL CHECK (rate >= 0 AND rate < 1),
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    version     bigint       NOT NULL DEFAULT 1,
    archived_at timestamptz
);
CREATE UNIQUE INDEX tax_classes_name_key ON tax_classes (lower(name)) WHERE archived_at IS NULL;

CREATE TABLE categories (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    parent_id   uuid        REFERENCES categories (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1,
    archived_at timestamptz,
    CHECK (parent_id IS DISTINCT FROM id)
);
-- Sibling names are unique; NULLS NOT DISTINCT makes that hold for top-level categories too.
CREATE UNIQUE INDEX categories_name_key ON categories (parent_id, lower(name)) NULLS NOT DISTINCT WHERE archived_at IS NULL;
