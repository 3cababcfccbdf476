-- operations.receipts: every render of a receipt (the first is the original, every later one a
-- numbered copy, NF525's duplicata), the count per document, and each register's receipt printer.

-- How many times each document's receipt was rendered (the row lock numbers copies one by one),
-- and the receipt as first issued: every copy prints it again (its QR code included), whatever
-- the settings say by then, and `receipt verify` compares a code with it.
CREATE TABLE receipt_copies (
    document_id uuid    PRIMARY KEY,
    renders     integer NOT NULL CHECK (renders >= 1),
    original    jsonb
);

-- One row per render: who, when, which copy (0: the original) and in which format. Append-only.
CREATE TABLE receipt_renders (
    -- In insert order: a Z report counts the copies up to the last one it saw.
    seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    document_id uuid        NOT NULL,
    copy        integer     NOT NULL CHECK (copy >= 0),
    kind        text        NOT NULL CHECK (kind IN ('sale', 'return', 'void')),
    register_id uuid        NOT NULL REFERENCES registers (id),
    format      text        NOT NULL CHECK (format IN ('json', 'text', 'escpos', 'pdf', 'print')),
    rendered_by uuid        NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (document_id, copy)
);
-- The X and Z reports count the copies made at registers in a period. A copy may be made after
-- its day was closed (a reprint that evening): the Z counts those recorded before it was made
-- (up to the `seq` it states), so `plugpos closing verify` recounts exactly those.
CREATE INDEX receipt_renders_copies ON receipt_renders (register_id, created_at) WHERE copy > 0;

CREATE FUNCTION receipt_renders_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'receipt renders are append-only: % is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER receipt_renders_append_only BEFORE UPDATE OR DELETE ON receipt_renders
    FOR EACH ROW EXECUTE FUNCTION receipt_renders_refuse_change();
CREATE TRIGGER receipt_renders_no_truncate BEFORE TRUNCATE ON receipt_renders
    FOR EACH STATEMENT EXECUTE FUNCTION receipt_renders_refuse_change();

-- A register's receipt printer: none (the till prints the escpos bytes itself) or a network
-- printer taking raw ESC/POS on a TCP port (9100), its paper width, encoding and what it does
-- by itself (print every sale, open the drawer on cash).
CREATE TABLE receipt_printers (
    register_id uuid        PRIMARY KEY REFERENCES registers (id),
    kind        text        NOT NULL CHECK (kind IN ('none', 'network')),
    host        text        CHECK (host ~ '^[A-Za-z0-9.:\[\]-]{1,253}$'),
    port        integer     CHECK (port BETWEEN 1 AND 65535),
    width_mm    integer     NOT NULL CHECK (width_mm IN (58, 80)),
    encoding    text        NOT NULL CHECK (encoding IN ('cp858', 'utf8')),
    auto_print  boolean     NOT NULL,
    drawer_kick boolean     NOT NULL,
    version     bigint      NOT NULL,
    updated_at  timestamptz NOT NULL,
    CHECK (kind = 'none' OR (host IS NOT NULL AND port IS NOT NULL))
);
CREATE TRIGGER receipt_printers_notify_cached_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON receipt_printers FOR EACH STATEMENT EXECUTE FUNCTION notify_cached_change();

-- A closing waits for the renders in flight and holds new ones back, as it does documents.
CREATE OR REPLACE FUNCTION lock_documents_for_closing() RETURNS void LANGUAGE sql SECURITY DEFINER
    SET search_path = public AS $$
    LOCK TABLE sales, returns, cash_movements, stock_movements, receipt_renders IN SHARE MODE;
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON receipt_renders FROM plugpos_app;
        REVOKE DELETE, TRUNCATE ON receipt_copies FROM plugpos_app;
    END IF;
END
$$;
