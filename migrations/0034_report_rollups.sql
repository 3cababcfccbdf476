-- operations.sales: what reports read instead of ten million sale lines. Each completed sale is
-- queued in its own statement (report_queue); the rollup worker takes queued sales in batches and
-- adds them to per-business-day (and per-month) totals in the transaction that deletes them from
-- the queue, so a sale is counted once, and only once it committed. The raw lines stay the source
-- of truth: a check recomputes the totals from them (docs/ARCHITECTURE.md, "Reports").
--
-- A line also keeps its product's cost price when it was sold (NULL for lines sold before this
-- migration, and for products without a cost price), so margins are those of the day of the sale.

ALTER TABLE sale_lines ADD COLUMN unit_cost numeric(14,4);

-- Sales not yet in the rollups. No index: the worker takes the whole table, a batch at a time.
CREATE TABLE report_queue (
    sale_id uuid NOT NULL
);

-- The business timezone and day start the rollups were built with: when either changes (business
-- days move), or the row is missing, the next drain builds them again from every sale.
CREATE TABLE report_rollup_state (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    timezone   text        NOT NULL,
    day_start  text        NOT NULL,
    rebuilt_at timestamptz NOT NULL
);

-- Per business day, local hour (business timezone), register and cashier.
CREATE TABLE report_sales_hourly (
    day          date     NOT NULL,
    hour         smallint NOT NULL CHECK (hour BETWEEN 0 AND 23),
    register_id  uuid     NOT NULL,
    cashier_id   uuid     NOT NULL,
    sales        bigint   NOT NULL,
    items        numeric  NOT NULL,
    net          numeric  NOT NULL,
    tax          numeric  NOT NULL,
    gross        numeric  NOT NULL,
    discount     numeric  NOT NULL,
    -- Cost of the lines with a known cost, and how many lines had none.
    cost         numeric  NOT NULL,
    cost_missing bigint   NOT NULL,
    PRIMARY KEY (day, hour, register_id, cashier_id)
);

-- Per business day (and per month: the first day of the month), register and product. A line's
-- gross is what the customer paid for it; its net is the gross less its tax at its rate, rounded
-- to 4 decimals (docs/api.md, "Reports").
CREATE TABLE report_products_daily (
    day          date    NOT NULL,
    register_id  uuid    NOT NULL,
    product_id   uuid    NOT NULL,
    lines        bigint  NOT NULL,
    quantity     numeric NOT NULL,
    net          numeric NOT NULL,
    gross        numeric NOT NULL,
    discount     numeric NOT NULL,
    cost         numeric NOT NULL,
    cost_missing bigint  NOT NULL,
    PRIMARY KEY (day, register_id, product_id)
);

CREATE TABLE report_products_monthly (
    month        date    NOT NULL CHECK (extract(day FROM month) = 1),
    register_id  uuid    NOT NULL,
    product_id   uuid    NOT NULL,
    lines        bigint  NOT NULL,
    quantity     numeric NOT NULL,
    net          numeric NOT NULL,
    gross        numeric NOT NULL,
    discount     numeric NOT NULL,
    cost         numeric NOT NULL,
    cost_missing bigint  NOT NULL,
    PRIMARY KEY (month, register_id, product_id)
);

-- Per business day, register, cashier and payment method: what was taken (cash less change).
CREATE TABLE report_payments_daily (
    day         date    NOT NULL,
    register_id uuid    NOT NULL,
    cashier_id  uuid    NOT NULL,
    method      text    NOT NULL,
    payments    bigint  NOT NULL,
    amount      numeric NOT NULL,
    PRIMARY KEY (day, register_id, cashier_id, method)
);

-- Per business day, register and tax rate: the sales' tax buckets.
CREATE TABLE report_taxes_daily (
    day         date         NOT NULL,
    register_id uuid         NOT NULL,
    rate        numeric(7,6) NOT NULL,
    net         numeric      NOT NULL,
    tax         numeric      NOT NULL,
    gross       numeric      NOT NULL,
    PRIMARY KEY (day, register_id, rate)
);

-- Per business day, register, cashier and reason: discounts given (a line's own, or a sale's).
CREATE TABLE report_discounts_daily (
    day         date    NOT NULL,
    register_id uuid    NOT NULL,
    cashier_id  uuid    NOT NULL,
    reason_code text    NOT NULL,
    discounts   bigint  NOT NULL,
    amount      numeric NOT NULL,
    PRIMARY KEY (day, register_id, cashier_id, reason_code)
);

-- Per business day, register and customer: sales naming a customer.
CREATE TABLE report_customers_daily (
    day         date    NOT NULL,
    register_id uuid    NOT NULL,
    customer_id uuid    NOT NULL,
    sales       bigint  NOT NULL,
    gross       numeric NOT NULL,
    PRIMARY KEY (day, register_id, customer_id)
);

-- The sales recorded so far are rolled up at the server's first drain: without a row in
-- report_rollup_state, it queues every sale (and an admin may delete that row to have the rollups
-- built again, docs/operations.md).

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE TRUNCATE ON report_queue, report_rollup_state, report_sales_hourly, report_products_daily,
            report_products_monthly, report_payments_daily, report_taxes_daily, report_discounts_daily,
            report_customers_daily FROM plugpos_app;
    END IF;
END
$$;

-- management.reports: running reports and seeing the dashboard.
INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'management.reports.read'), ('super_admin', 'management.reports.dashboard'),
               ('manager', 'management.reports.read'), ('manager', 'management.reports.dashboard'),
               ('accountant', 'management.reports.read'), ('accountant', 'management.reports.dashboard'))
       AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;
