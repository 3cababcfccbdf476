-- Issue 30: a second person's approval on the cashier's till, and the approver PINs it may use.

-- core.auth: an optional approver PIN per user (4-8 digits, argon2id like passwords). Locked
-- after 5 wrong PINs in a row until its owner sets a new one.
CREATE TABLE user_pins (
    user_id    uuid        PRIMARY KEY REFERENCES users (id),
    pin_hash   text        NOT NULL CHECK (pin_hash LIKE '$argon2id$%'),
    failures   int         NOT NULL DEFAULT 0 CHECK (failures >= 0),
    locked_at  timestamptz,
    updated_at timestamptz NOT NULL
);

-- operations.approvals: one approval, single-use, bound to its action, scope and the cashier who
-- asked for it. `used_key` names the request that used it (its scoped idempotency key), so a
-- retry of that same request still finds it.
CREATE TABLE approvals (
    id                uuid          PRIMARY KEY,
    action            text          NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),
    requester_id      uuid          NOT NULL REFERENCES users (id),
    approver_id       uuid          NOT NULL REFERENCES users (id),
    approver_username text          NOT NULL,
    register_id       uuid          NOT NULL REFERENCES registers (id),
    sale_id           uuid,
    amount            numeric(14,4) CHECK (amount >= 0),
    -- The approver may also approve a return without a receipt.
    without_receipt   boolean       NOT NULL DEFAULT false,
    created_at        timestamptz   NOT NULL,
    expires_at        timestamptz   NOT NULL CHECK (expires_at > created_at),
    used_at           timestamptz,
    used_key          text,
    CHECK ((used_at IS NULL) = (used_key IS NULL)),
    CHECK (approver_id <> requester_id)
);
CREATE INDEX approvals_by_time ON approvals (created_at);

-- Built-in roles of an instance set up before get the new permissions (a new instance gets them
-- at setup from the declarations).
INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'operations.sales.void'), ('manager', 'operations.sales.void'),
               ('super_admin', 'operations.sales.discount'), ('manager', 'operations.sales.discount'),
               ('super_admin', 'operations.cash.no_sale'), ('manager', 'operations.cash.no_sale'),
               ('super_admin', 'operations.returns.create'), ('manager', 'operations.returns.create'),
               ('super_admin', 'operations.returns.without_receipt'), ('manager', 'operations.returns.without_receipt'),
               ('super_admin', 'operations.returns.read'), ('manager', 'operations.returns.read'),
               ('cashier', 'operations.returns.read'), ('accountant', 'operations.returns.read'),
               ('auditor', 'operations.returns.read')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE DELETE, TRUNCATE ON approvals FROM plugpos_app;
    END IF;
END
$$;
