-- Foundation: the business, its settings, its places, and who may use it.
-- Released migrations are never edited; a change is a new migration.

-- Exactly one business per database (one database per business). The CHECK makes a second
-- setup impossible even when two setup requests race.
CREATE TABLE business (
    id          smallint    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    currency    char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    timezone    text        NOT NULL CHECK (length(timezone) BETWEEN 1 AND 64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1
);

-- Baseline settings (tax, numbering, security policy), one JSON value per key.
CREATE TABLE settings (
    key         text        PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_.]*$'),
    value       jsonb       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1
);

CREATE TABLE branches (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1,
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX branches_name_key ON branches (lower(name)) WHERE deleted_at IS NULL;

-- Places that hold stock (a shop floor, a back room, a warehouse).
CREATE TABLE locations (
    id          uuid        PRIMARY KEY,
    branch_id   uuid        NOT NULL REFERENCES branches (id),
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1,
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX locations_name_key ON locations (branch_id, lower(name)) WHERE deleted_at IS NULL;

-- Tills; receipts are numbered per register.
CREATE TABLE registers (
    id          uuid        PRIMARY KEY,
    branch_id   uuid        NOT NULL REFERENCES branches (id),
    location_id uuid        NOT NULL REFERENCES locations (id),
    name        text        NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1,
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX registers_name_key ON registers (branch_id, lower(name)) WHERE deleted_at IS NULL;

CREATE TABLE roles (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{1,63}$'),
    description text        NOT NULL DEFAULT '',
    builtin     boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    version     bigint      NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX roles_name_key ON roles (name);

CREATE TABLE users (
    id                       uuid        PRIMARY KEY,
    username                 text        NOT NULL CHECK (length(username) BETWEEN 1 AND 64),
    display_name             text        NOT NULL DEFAULT '',
    -- PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash); never logged, never returned.
    password_hash            text        NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    password_change_required boolean     NOT NULL DEFAULT false,
    disabled_at              timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    version                  bigint      NOT NULL DEFAULT 1
);
-- Usernames are unique regardless of case, so "Admin" and "admin" are one account.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE user_roles (
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id     uuid        NOT NULL REFERENCES roles (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, role_id)
);
