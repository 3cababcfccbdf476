-- Least privilege: the server connects as plugpos_app, which may read and write business tables
-- but only INSERT into and SELECT from the audit log. Migrations run as the database owner.
-- The role is created by plugpos for its managed cluster (or by the DBA for an external database,
-- see docs/operations.md); without it the grants are skipped.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        GRANT USAGE ON SCHEMA public TO plugpos_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO plugpos_app;
        REVOKE UPDATE, DELETE, TRUNCATE ON audit_records, audit_chain, audit_checkpoints FROM plugpos_app;
        IF to_regclass('_sqlx_migrations') IS NOT NULL THEN
            REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON _sqlx_migrations FROM plugpos_app;
        END IF;
        -- Tables of later migrations get the same grants; audit-like tables must revoke again.
        ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO plugpos_app;
    END IF;
END
$$;
