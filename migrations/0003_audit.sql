-- The audit log: what happened (audit_records, written inside the business transaction) and
-- the hash chain over it (audit_chain, appended in commit order by the chainer). Both are
-- append-only: the database refuses UPDATE, DELETE and TRUNCATE on them. See docs/audit-chain.md.

CREATE TABLE audit_records (
    id              uuid        PRIMARY KEY,
    at              timestamptz NOT NULL,
    actor_user_id   uuid,
    actor_username  text,
    actor_role      text,
    workstation_id  text,
    branch_id       uuid,
    module          text        NOT NULL CHECK (module ~ '^[a-z][a-z_.]*$'),
    entity          text        NOT NULL CHECK (entity ~ '^[a-z][a-z_]*$'),
    entity_id       text,
    action          text        NOT NULL CHECK (action ~ '^[a-z][a-z_]*\.[a-z][a-z_]*$'),
    -- Canonical JSON text exactly as hashed (not jsonb, which would reformat it).
    before_json     text,
    after_json      text,
    reason_code     text,
    approval_ref    text,
    request_id      text
);
CREATE INDEX audit_records_by_time ON audit_records (at);
CREATE INDEX audit_records_by_entity ON audit_records (entity, entity_id);

-- Records committed but not chained yet (the chainer empties it within milliseconds).
CREATE TABLE audit_pending (
    record_id   uuid PRIMARY KEY REFERENCES audit_records (id)
);

CREATE TABLE audit_chain (
    seq         bigint      PRIMARY KEY CHECK (seq >= 1),
    record_id   uuid        NOT NULL UNIQUE REFERENCES audit_records (id),
    prev_hash   bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    chained_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- Signed checkpoints (ed25519 over seq, head hash and time): kept outside the database too, they
-- reveal a truncated tail or a chain rewritten from scratch.
CREATE TABLE audit_checkpoints (
    id          uuid        PRIMARY KEY,
    seq         bigint      NOT NULL CHECK (seq >= 0),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    at          timestamptz NOT NULL,
    public_key  bytea       NOT NULL CHECK (length(public_key) = 32),
    signature   bytea       NOT NULL CHECK (length(signature) = 64)
);
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
