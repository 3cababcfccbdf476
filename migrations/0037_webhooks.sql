-- Issue 35: webhooks. A webhook names a URL (whose host the setting `integrations.webhook_targets`
-- allows), the events it wants and its signing secret (sealed with the instance's secrets key, as
-- TOTP seeds are). Each event for it is one delivery, sent by the job queue until the receiver
-- answers 2xx, retried with backoff, dead after the last attempt, replayable by hand; the body is
-- kept as sent, so a replay is byte for byte the same event (same id) signed anew.
CREATE TABLE webhooks (
    id            uuid        PRIMARY KEY,
    url           text        NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    events        text[]      NOT NULL CHECK (cardinality(events) >= 1),
    secret_sealed bytea       NOT NULL,
    created_by    uuid        NOT NULL REFERENCES users (id),
    created_at    timestamptz NOT NULL,
    deleted_at    timestamptz
);

CREATE TABLE webhook_deliveries (
    id           uuid        PRIMARY KEY,
    webhook_id   uuid        NOT NULL REFERENCES webhooks (id),
    event_id     uuid        NOT NULL,
    event        text        NOT NULL,
    body         text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failing', 'dead')),
    attempts     int         NOT NULL DEFAULT 0,
    last_status  int,
    last_error   text,
    created_at   timestamptz NOT NULL,
    last_attempt_at timestamptz,
    delivered_at timestamptz,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at DESC, id DESC);

-- The server keeps the active webhooks in memory: forget them at every change.
CREATE TRIGGER webhooks_notify_cached_change AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION notify_cached_change();
