-- management.customers: customers (soft-deleted; erased on request, GDPR Art. 17), the price lists
-- of customer groups, and the customers the retention job proposes to erase. Sales and returns
-- may name a customer. Personal values in audit records are sealed under a key per customer
-- (core.audit's audit_subject_keys): erasure destroys the key, the chain still verifies.

-- core.audit: one key per subject (a customer) whose personal values audit records hold sealed.
-- Outside the chain, and deleted on erasure (docs/audit-chain.md, "Personal data").
CREATE TABLE audit_subject_keys (
    subject_id uuid        PRIMARY KEY,
    key        bytea       NOT NULL CHECK (length(key) = 32),
    created_at timestamptz NOT NULL
);

CREATE TABLE customers (
    id                uuid        PRIMARY KEY,
    name              text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    email             text        CHECK (length(email) <= 254),
    phone             text        CHECK (length(phone) <= 50),
    tax_id            text        CHECK (length(tax_id) <= 50),
    address           text        CHECK (length(address) <= 500),
    customer_group    text        CHECK (customer_group ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    notes             text        CHECK (length(notes) <= 2000),
    marketing_consent boolean     NOT NULL DEFAULT false,
    -- When and how the current consent answer was given (e.g. `till`, `paper_form`, `web`).
    consent_at        timestamptz,
    consent_source    text        CHECK (length(consent_source) <= 100),
    -- Folded (lower case, no accents) name, email and phone digits: what search matches.
    search_text       text        NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    deleted_at        timestamptz,
    erased_at         timestamptz,
    version           bigint      NOT NULL DEFAULT 1,
    CHECK (erased_at IS NULL OR (email IS NULL AND phone IS NULL AND tax_id IS NULL AND address IS NULL
                                 AND notes IS NULL AND search_text = ''))
);
CREATE INDEX customers_search ON customers USING gin (search_text gin_trgm_ops) WHERE deleted_at IS NULL;
CREATE INDEX customers_search_prefix ON customers (search_text text_pattern_ops) WHERE deleted_at IS NULL;
CREATE INDEX customers_by_name ON customers (lower(name), id) WHERE deleted_at IS NULL;
-- No planner statistics of personal values: ANALYZE would copy samples of them into pg_statistic,
-- where an erasure cannot reach them until the next analyze (the search does not need them: it
-- always goes through its indexes, see management::customers::store::search).
ALTER TABLE customers ALTER COLUMN name SET STATISTICS 0;
ALTER TABLE customers ALTER COLUMN email SET STATISTICS 0;
ALTER TABLE customers ALTER COLUMN phone SET STATISTICS 0;
ALTER TABLE customers ALTER COLUMN tax_id SET STATISTICS 0;
ALTER TABLE customers ALTER COLUMN address SET STATISTICS 0;
ALTER TABLE customers ALTER COLUMN notes SET STATISTICS 0;
ALTER TABLE customers ALTER COLUMN search_text SET STATISTICS 0;
ALTER INDEX customers_by_name ALTER COLUMN 1 SET STATISTICS 0;

-- A price list of a customer group, valid on the calendar dates (business timezone) [valid_from, valid_to] (open
-- ends when null).
CREATE TABLE price_lists (
    id             uuid        PRIMARY KEY,
    name           text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    customer_group text        NOT NULL CHECK (customer_group ~ '^[a-z0-9][a-z0-9_-]{0,39}$'),
    valid_from     date,
    valid_to       date,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    deleted_at     timestamptz,
    version        bigint      NOT NULL DEFAULT 1,
    CHECK (valid_from IS NULL OR valid_to IS NULL OR valid_from <= valid_to)
);
CREATE INDEX price_lists_by_group ON price_lists (customer_group) WHERE deleted_at IS NULL;

-- One rule: a fixed price or a percent off, for a product or for a category (and below it).
CREATE TABLE price_list_rules (
    id            uuid          PRIMARY KEY,
    price_list_id uuid          NOT NULL REFERENCES price_lists (id),
    product_id    uuid          REFERENCES products (id),
    category_id   uuid          REFERENCES categories (id),
    kind          text          NOT NULL CHECK (kind IN ('fixed_price', 'percent_off')),
    value         numeric(14,4) NOT NULL CHECK (value >= 0 AND (kind = 'fixed_price' OR value <= 100)),
    CHECK (num_nonnulls(product_id, category_id) = 1),
    UNIQUE (price_list_id, product_id),
    UNIQUE (price_list_id, category_id)
);

-- The customers the retention job proposes to erase (never erased by it): no purchase, return or
-- change for longer than customers.retention_days.
CREATE TABLE customer_retention (
    customer_id      uuid        PRIMARY KEY REFERENCES customers (id),
    last_activity_at timestamptz NOT NULL,
    proposed_at      timestamptz NOT NULL
);

-- Sales and returns may name a customer (kept when the customer is erased: the documents stay
-- valid; the customer's row says "erased customer").
ALTER TABLE sales ADD COLUMN customer_id uuid REFERENCES customers (id);
CREATE INDEX sales_by_customer ON sales (customer_id, created_at) WHERE customer_id IS NOT NULL;
-- The price list rule a line was priced by: {"price_list_id", "price_list", "rule_id", "kind", "value"}.
ALTER TABLE sale_lines ADD COLUMN price_rule jsonb;
ALTER TABLE returns ADD COLUMN customer_id uuid REFERENCES customers (id);
CREATE INDEX returns_by_customer ON returns (customer_id, created_at) WHERE customer_id IS NOT NULL;

-- operations.approvals: back-office actions (erasing a customer) are approved without a register,
-- bound to the record they are about.
ALTER TABLE approvals ALTER COLUMN register_id DROP NOT NULL;
ALTER TABLE approvals ADD COLUMN subject_id uuid;
ALTER TABLE approvals ADD CHECK (register_id IS NOT NULL OR subject_id IS NOT NULL);

-- Price lists are read by every sale naming a customer: kept in memory, forgotten on change.
DO $$
DECLARE
    watched text;
BEGIN
    FOREACH watched IN ARRAY ARRAY['price_lists', 'price_list_rules', 'categories'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = watched || '_notify_cached_change') THEN
            EXECUTE format(
                'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I '
                'FOR EACH STATEMENT EXECUTE FUNCTION notify_cached_change()',
                watched || '_notify_cached_change', watched);
        END IF;
    END LOOP;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE DELETE, TRUNCATE ON customers, price_lists FROM plugpos_app;
    END IF;
END
$$;

INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'management.customers.read'), ('super_admin', 'management.customers.write'),
               ('super_admin', 'management.customers.export'), ('super_admin', 'management.customers.erase'),
               ('super_admin', 'management.customers.price_lists'),
               ('manager', 'management.customers.read'), ('manager', 'management.customers.write'),
               ('manager', 'management.customers.export'), ('manager', 'management.customers.erase'),
               ('manager', 'management.customers.price_lists'),
               ('cashier', 'management.customers.read'), ('cashier', 'management.customers.write'),
               ('accountant', 'management.customers.read')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;
