-- Authentication, sessions, role permissions and security events.

-- Rotated whenever a user's credentials or privileges change (password, roles, disable): every
-- session remembers the stamp it was opened under and dies the moment they differ.
ALTER TABLE users ADD COLUMN security_stamp uuid NOT NULL DEFAULT gen_random_uuid();

-- Contact details: read and written only with the users.contact_* permissions (field-level).
ALTER TABLE users ADD COLUMN email text CHECK (length(email) <= 254);
ALTER TABLE users ADD COLUMN phone text CHECK (length(phone) <= 40);

CREATE TABLE role_permissions (
    role_id     uuid        NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission  text        NOT NULL CHECK (permission ~ '^[a-z][a-z_]*\.[a-z][a-z_]*\.[a-z][a-z_.]*$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_id, permission)
);

-- One session per login; its refresh tokens form one family.
CREATE TABLE sessions (
    id              uuid        PRIMARY KEY,
    user_id         uuid        NOT NULL REFERENCES users (id),
    security_stamp  uuid        NOT NULL,
    workstation_id  text        CHECK (length(workstation_id) <= 128),
    ip              inet,
    user_agent      text        CHECK (length(user_agent) <= 512),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    -- Absolute lifetime: no refresh extends a session past this.
    expires_at      timestamptz NOT NULL,
    ended_at        timestamptz,
    end_reason      text,
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX sessions_active_by_user ON sessions (user_id, created_at) WHERE ended_at IS NULL;

-- Refresh tokens are stored as SHA-256 hashes; a used one stays, so its reuse is recognised.
CREATE TABLE refresh_tokens (
    token_hash  bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    session_id  uuid        NOT NULL REFERENCES sessions (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id);

-- Consecutive failed logins per lower-cased username, whether or not the account exists, so
-- throttling and lockout never reveal which usernames are real.
CREATE TABLE login_attempts (
    username_key     text        PRIMARY KEY,
    failures         integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_failure_at  timestamptz NOT NULL DEFAULT now(),
    throttled_until  timestamptz,
    locked_until     timestamptz
);

CREATE TABLE security_events (
    id              uuid        PRIMARY KEY,
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    kind            text        NOT NULL CHECK (kind ~ '^[a-z_]+$'),
    user_id         uuid        REFERENCES users (id),
    username        text,
    workstation_id  text,
    ip              inet,
    request_id      text,
    details         jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX security_events_by_time ON security_events (occurred_at, id);
CREATE INDEX security_events_by_user ON security_events (user_id, occurred_at);
CREATE INDEX security_events_by_kind ON security_events (kind, occurred_at);

-- TOTP (RFC 6238) per user. A secret is pending until a first code confirms it; the last
-- accepted time step is kept so a code is never accepted twice.
CREATE TABLE user_mfa (
    user_id         uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret          bytea       NOT NULL CHECK (length(secret) >= 16),
    confirmed_at    timestamptz,
    last_used_step  bigint,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- One-time recovery codes, stored as SHA-256 hashes.
CREATE TABLE mfa_recovery_codes (
    code_hash   bytea       PRIMARY KEY CHECK (length(code_hash) = 32),
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);
CREATE INDEX mfa_recovery_codes_by_user ON mfa_recovery_codes (user_id);
