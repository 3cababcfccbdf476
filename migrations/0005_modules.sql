-- Registered modules: their versions as last started, and whether the business uses them.
CREATE TABLE modules (
    id          text        PRIMARY KEY CHECK (id ~ '^[a-z][a-z_]*\.[a-z][a-z_]*$'),
    version     text        NOT NULL,
    enabled     boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
