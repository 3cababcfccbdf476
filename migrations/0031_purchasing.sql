-- management.purchasing: suppliers (soft-deleted), what each supplies (their code and the last
-- price paid), purchase orders and the goods receipts against them. A receipt adds stock at the
-- order's location (stock movement `received`, the receipt as document) and updates the product's
-- cost price by the business's method (setting purchasing.cost_method).

CREATE TABLE suppliers (
    id                 uuid        PRIMARY KEY,
    name               text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    tax_id             text        CHECK (length(tax_id) <= 50),
    contact            text        CHECK (length(contact) <= 200),
    email              text        CHECK (length(email) <= 254),
    phone              text        CHECK (length(phone) <= 50),
    address            text        CHECK (length(address) <= 500),
    payment_terms_days int         CHECK (payment_terms_days BETWEEN 0 AND 365),
    notes              text        CHECK (length(notes) <= 2000),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    deleted_at         timestamptz,
    version            bigint      NOT NULL DEFAULT 1
);
CREATE INDEX suppliers_by_name ON suppliers (lower(name), id) WHERE deleted_at IS NULL;

CREATE TABLE supplier_products (
    supplier_id      uuid          NOT NULL REFERENCES suppliers (id),
    product_id       uuid          NOT NULL REFERENCES products (id),
    supplier_code    text          CHECK (length(supplier_code) <= 64),
    last_price       numeric(14,4) CHECK (last_price >= 0),
    last_received_at timestamptz,
    PRIMARY KEY (supplier_id, product_id)
);

CREATE TABLE purchase_order_counters (
    id          int    PRIMARY KEY CHECK (id = 1),
    last_number bigint NOT NULL
);

CREATE TABLE purchase_orders (
    id          uuid        PRIMARY KEY,
    number      bigint      NOT NULL UNIQUE,
    supplier_id uuid        NOT NULL REFERENCES suppliers (id),
    location_id uuid        NOT NULL REFERENCES locations (id),
    status      text        NOT NULL CHECK (status IN ('draft', 'ordered', 'partially_received', 'received', 'cancelled')),
    note        text        CHECK (length(note) <= 500),
    created_by  uuid        NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL,
    ordered_at  timestamptz,
    updated_at  timestamptz NOT NULL,
    version     bigint      NOT NULL DEFAULT 1
);
CREATE INDEX purchase_orders_by_time ON purchase_orders (created_at DESC, id DESC);

CREATE TABLE purchase_order_lines (
    order_id          uuid          NOT NULL REFERENCES purchase_orders (id),
    line_no           int           NOT NULL CHECK (line_no > 0),
    product_id        uuid          NOT NULL REFERENCES products (id),
    quantity          numeric(14,3) NOT NULL CHECK (quantity > 0),
    unit_cost         numeric(14,4) NOT NULL CHECK (unit_cost >= 0),
    received_quantity numeric(14,3) NOT NULL DEFAULT 0 CHECK (received_quantity >= 0),
    PRIMARY KEY (order_id, line_no),
    UNIQUE (order_id, product_id)
);

CREATE TABLE goods_receipts (
    id          uuid        PRIMARY KEY,
    order_id    uuid        NOT NULL REFERENCES purchase_orders (id),
    note        text        CHECK (length(note) <= 500),
    received_by uuid        NOT NULL REFERENCES users (id),
    received_at timestamptz NOT NULL
);
CREATE INDEX goods_receipts_by_order ON goods_receipts (order_id, received_at);

CREATE TABLE goods_receipt_lines (
    receipt_id uuid          NOT NULL REFERENCES goods_receipts (id),
    line_no    int           NOT NULL,
    product_id uuid          NOT NULL REFERENCES products (id),
    quantity   numeric(14,3) NOT NULL CHECK (quantity > 0),
    unit_cost  numeric(14,4) NOT NULL CHECK (unit_cost >= 0),
    -- The product's cost price after this receipt (by the method in force).
    cost_after numeric(14,4) NOT NULL,
    PRIMARY KEY (receipt_id, line_no)
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE DELETE, TRUNCATE ON suppliers, purchase_orders, purchase_order_lines, goods_receipts,
            goods_receipt_lines FROM plugpos_app;
    END IF;
END
$$;

INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'management.purchasing.read'), ('super_admin', 'management.purchasing.write'),
               ('super_admin', 'management.purchasing.receive'), ('manager', 'management.purchasing.read'),
               ('manager', 'management.purchasing.write'), ('manager', 'management.purchasing.receive'),
               ('accountant', 'management.purchasing.read')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;
