-- management.stock: transfers between locations. A transfer is a document: draft, then sent
-- (its goods leave the source and are in transit), then received (at the destination, with the
-- quantities that arrived and why any differ) or cancelled (only as a draft). Numbered per
-- branch of the source location.

CREATE TABLE stock_transfer_counters (
    branch_id   uuid   PRIMARY KEY REFERENCES branches (id),
    last_number bigint NOT NULL
);

CREATE TABLE stock_transfers (
    id               uuid        PRIMARY KEY,
    branch_id        uuid        NOT NULL REFERENCES branches (id),
    number           bigint      NOT NULL,
    from_location_id uuid        NOT NULL REFERENCES locations (id),
    to_location_id   uuid        NOT NULL REFERENCES locations (id),
    status           text        NOT NULL CHECK (status IN ('draft', 'sent', 'received', 'cancelled')),
    note             text        CHECK (length(note) <= 500),
    created_by       uuid        NOT NULL REFERENCES users (id),
    created_at       timestamptz NOT NULL,
    sent_by          uuid        REFERENCES users (id),
    sent_at          timestamptz,
    received_by      uuid        REFERENCES users (id),
    received_at      timestamptz,
    cancelled_by     uuid        REFERENCES users (id),
    cancelled_at     timestamptz,
    updated_at       timestamptz NOT NULL,
    version          bigint      NOT NULL DEFAULT 1,
    UNIQUE (branch_id, number),
    CHECK (from_location_id <> to_location_id),
    CHECK ((status = 'draft') = (sent_at IS NULL AND cancelled_at IS NULL)),
    CHECK (status <> 'received' OR received_at IS NOT NULL)
);
CREATE INDEX stock_transfers_by_time ON stock_transfers (created_at DESC, id DESC);
CREATE INDEX stock_transfers_in_transit ON stock_transfers (to_location_id) WHERE status = 'sent';

CREATE TABLE stock_transfer_lines (
    transfer_id       uuid          NOT NULL REFERENCES stock_transfers (id),
    line_no           int           NOT NULL CHECK (line_no > 0),
    product_id        uuid          NOT NULL REFERENCES products (id),
    quantity          numeric(14,3) NOT NULL CHECK (quantity > 0),
    received_quantity numeric(14,3) CHECK (received_quantity >= 0),
    difference_reason text          CHECK (difference_reason IN ('damaged', 'lost', 'miscounted')),
    PRIMARY KEY (transfer_id, line_no),
    UNIQUE (transfer_id, product_id),
    CHECK (received_quantity IS NULL OR received_quantity = quantity OR difference_reason IS NOT NULL)
);

-- A sent transfer's goods are history once they left: no line of a transfer that is not a draft
-- changes, except the received quantities written as it is received.
CREATE FUNCTION stock_transfer_lines_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    SELECT status INTO current FROM stock_transfers WHERE id = COALESCE(NEW.transfer_id, OLD.transfer_id);
    IF TG_OP = 'UPDATE' AND current = 'sent'
       AND NEW.quantity = OLD.quantity AND NEW.product_id = OLD.product_id AND NEW.line_no = OLD.line_no
       AND OLD.received_quantity IS NULL THEN
        RETURN NEW;
    END IF;
    IF current IS DISTINCT FROM 'draft' THEN
        RAISE EXCEPTION 'the lines of a % transfer do not change (% on stock_transfer_lines)', current, TG_OP
            USING ERRCODE = 'P0001';
    END IF;
    RETURN COALESCE(NEW, OLD);
END
$$;
CREATE TRIGGER stock_transfer_lines_frozen BEFORE UPDATE OR DELETE ON stock_transfer_lines
    FOR EACH ROW EXECUTE FUNCTION stock_transfer_lines_frozen();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE DELETE, TRUNCATE ON stock_transfers, stock_transfer_lines FROM plugpos_app;
    END IF;
END
$$;

INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'management.stock.transfer'), ('manager', 'management.stock.transfer')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;
