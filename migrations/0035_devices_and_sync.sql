-- Issue 35: enrolled tills (devices) and the change feed they keep their offline copy with.

-- core.devices: a till an admin enrolled. Its credential is a random secret shown once at
-- enrolment; only its SHA-256 is kept. A register is bound to at most one device that is not
-- revoked, and the server caches that binding (every sale checks it): the trigger below forgets it
-- at every change, so what a device does all day (its last request, its feed position) is kept in
-- `device_activity`, which is not watched.
CREATE TABLE devices (
    id           uuid        PRIMARY KEY,
    name         text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    register_id  uuid        NOT NULL REFERENCES registers (id),
    token_hash   bytea       UNIQUE CHECK (length(token_hash) = 32),
    created_by   uuid        NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL,
    enrolled_at  timestamptz,
    revoked_at   timestamptz,
    revoked_by   uuid        REFERENCES users (id),
    CHECK ((enrolled_at IS NULL) = (token_hash IS NULL))
);
CREATE UNIQUE INDEX devices_one_per_register ON devices (register_id) WHERE revoked_at IS NULL;
CREATE TRIGGER devices_notify_cached_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION notify_cached_change();

-- A device's last request (to the minute), the application version it named, and the feed
-- position it last confirmed (the cursor it sent), so the outbox is pruned only behind it.
CREATE TABLE device_activity (
    device_id    uuid        PRIMARY KEY REFERENCES devices (id),
    last_seen_at timestamptz,
    app_version  text        CHECK (length(app_version) <= 64),
    sync_xid     xid8,
    sync_id      bigint,
    sync_at      timestamptz
);

-- The one-time enrolment codes: only a hash is kept; used once, before it expires.
CREATE TABLE device_enrolments (
    code_hash  bytea       PRIMARY KEY CHECK (length(code_hash) = 32),
    device_id  uuid        NOT NULL REFERENCES devices (id),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX device_enrolments_by_device ON device_enrolments (device_id);

-- A session opened on an enrolled till is that device's: revoking the device ends it, and every
-- request of it must carry the device's credential.
ALTER TABLE sessions ADD COLUMN device_id uuid REFERENCES devices (id);
CREATE INDEX sessions_live_by_device ON sessions (device_id) WHERE ended_at IS NULL AND device_id IS NOT NULL;

-- The PIN's verifier for offline use on a till: argon2id like the server's own hash, under a salt
-- of its own, so what a till holds is not what the server checks. NULL for PINs set before this
-- migration (their owners set them again to work offline).
ALTER TABLE user_pins ADD COLUMN offline_verifier text CHECK (offline_verifier LIKE '$argon2id$%');

-- core.sync: the outbox. A statement that changes what a till caches adds, in its own transaction,
-- one row per changed entity: which entity and its key, never its values (the feed reads the
-- current row when it serves the change, so an erased customer leaves nothing here).
-- Positions are (xid, id): the writing transaction's id and a sequence. The feed serves only rows
-- whose transaction is older than the oldest one still running (`pg_snapshot_xmin`), in position
-- order, so no transaction can commit later below a position a client already read past
-- (docs/api.md, "The change feed").
CREATE TABLE sync_outbox (
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    id         bigint      GENERATED ALWAYS AS IDENTITY,
    entity     text        NOT NULL CHECK (entity ~ '^[a-z_]{1,40}$'),
    key        text        NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (xid, id)
);
CREATE INDEX sync_outbox_by_age ON sync_outbox (created_at);

-- Everything at or below this position was pruned: a cursor below it must take a new snapshot.
-- The epoch names this database's timeline: a restore gives it a new one, so cursors served
-- before (by the database the backup replaced, or by another machine) are refused.
CREATE TABLE sync_state (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch      uuid        NOT NULL,
    pruned_xid xid8        NOT NULL,
    pruned_id  bigint      NOT NULL,
    pruned_at  timestamptz
);
INSERT INTO sync_state (epoch, pruned_xid, pruned_id) VALUES (gen_random_uuid(), '0', 0);

-- Row triggers add the changed entity's key: TG_ARGV[0] the entity, TG_ARGV[1] the column holding
-- its key (on child tables, the parent's key: a barcode changes its product).
CREATE FUNCTION sync_note_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSIF TG_OP = 'UPDATE' AND to_jsonb(OLD) = to_jsonb(NEW) THEN
        RETURN NULL;
    ELSE
        changed := to_jsonb(NEW);
        IF TG_OP = 'UPDATE' AND to_jsonb(OLD) ->> TG_ARGV[1] IS DISTINCT FROM changed ->> TG_ARGV[1] THEN
            INSERT INTO sync_outbox (entity, key) VALUES (TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[1]);
        END IF;
    END IF;
    IF changed ->> TG_ARGV[1] IS NOT NULL THEN
        INSERT INTO sync_outbox (entity, key) VALUES (TG_ARGV[0], changed ->> TG_ARGV[1]);
    END IF;
    RETURN NULL;
END
$$;

-- A role's permissions or name changed: every user holding it changed, as a till sees users.
CREATE FUNCTION sync_note_role_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    role uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        role := (to_jsonb(OLD) ->> TG_ARGV[0])::uuid;
    ELSE
        role := (to_jsonb(NEW) ->> TG_ARGV[0])::uuid;
    END IF;
    INSERT INTO sync_outbox (entity, key)
    SELECT 'user', ur.user_id::text FROM user_roles ur WHERE ur.role_id = role;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    watched text[];
BEGIN
    FOREACH watched SLICE 1 IN ARRAY ARRAY[
        ['products', 'product', 'id'],
        ['product_barcodes', 'product', 'product_id'],
        ['categories', 'category', 'id'],
        ['tax_classes', 'tax_class', 'id'],
        ['price_lists', 'price_list', 'id'],
        ['price_list_rules', 'price_list', 'price_list_id'],
        ['customers', 'customer', 'id'],
        ['registers', 'register', 'id'],
        ['settings', 'setting', 'key'],
        ['business', 'business', 'id'],
        ['users', 'user', 'id'],
        ['user_roles', 'user', 'user_id'],
        ['user_pins', 'user', 'user_id']
    ] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
            'FOR EACH ROW EXECUTE FUNCTION sync_note_change(%L, %L)',
            watched[1] || '_sync_note_' || watched[2], watched[1], watched[2], watched[3]);
    END LOOP;
END
$$;
CREATE TRIGGER role_permissions_sync_note_user AFTER INSERT OR UPDATE OR DELETE ON role_permissions
    FOR EACH ROW EXECUTE FUNCTION sync_note_role_change('role_id');
CREATE TRIGGER roles_sync_note_user AFTER UPDATE ON roles
    FOR EACH ROW EXECUTE FUNCTION sync_note_role_change('id');

-- Built-in roles of an instance set up before get the new permissions (a new instance gets them
-- at setup from the declarations).
INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'administration.devices.read'), ('super_admin', 'administration.devices.manage'),
               ('super_admin', 'administration.devices.offline_use'), ('manager', 'administration.devices.read'),
               ('manager', 'administration.devices.offline_use'), ('cashier', 'administration.devices.offline_use'))
       AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;
