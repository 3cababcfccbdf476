-- Issue 35: API keys for integrations (accounting, web shop). The key is shown once; only its
-- SHA-256 is kept, with a short prefix to recognise it by. A key acts for the user who made it,
-- with at most that user's permissions, and stops when it is revoked, expires, or its maker is
-- disabled. The key rows are cached by the server (the trigger below forgets them at every change);
-- their use is written to a table of its own, which is not.
CREATE TABLE api_keys (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 100),
    prefix      text        NOT NULL CHECK (prefix ~ '^pk_[A-Za-z0-9_-]{8}$'),
    key_hash    bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    permissions text[]      NOT NULL,
    created_by  uuid        NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz,
    revoked_by  uuid        REFERENCES users (id),
    CHECK (expires_at IS NULL OR expires_at > created_at)
);

CREATE TABLE api_key_usage (
    key_id       uuid        PRIMARY KEY REFERENCES api_keys (id),
    last_used_at timestamptz NOT NULL,
    last_used_ip inet
);

CREATE TRIGGER api_keys_notify_cached_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION notify_cached_change();

INSERT INTO role_permissions (role_id, permission)
SELECT r.id, p.permission
  FROM roles r
  JOIN (VALUES ('super_admin', 'administration.integrations.read'),
               ('super_admin', 'administration.integrations.manage')) AS p (role, permission)
    ON p.role = r.name
 WHERE r.builtin
ON CONFLICT DO NOTHING;
