-- Failed logins are counted per username and client address, and account-wide under client
-- '*': guesses from one machine lock that machine out of the account, not the owner at the till.
ALTER TABLE login_attempts ADD COLUMN client text NOT NULL DEFAULT '*';
ALTER TABLE login_attempts DROP CONSTRAINT login_attempts_pkey;
ALTER TABLE login_attempts ADD PRIMARY KEY (username_key, client);
-- The prune job forgets quiet rows by age.
CREATE INDEX login_attempts_by_last_failure ON login_attempts (last_failure_at);

-- Security events are evidence: the application role may add and read them, never change or
-- delete them. Old ones leave only through this function, which keeps at least the last 30 days
-- whatever the caller asks (the retention is a setting, the floor is not).
CREATE FUNCTION prune_security_events(cutoff timestamptz) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    deleted bigint;
BEGIN
    IF cutoff > now() - interval '30 days' THEN
        RAISE EXCEPTION 'security events of the last 30 days are kept (asked to prune before %)', cutoff
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM security_events WHERE occurred_at < cutoff;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END
$$;
REVOKE ALL ON FUNCTION prune_security_events(timestamptz) FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plugpos_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON security_events FROM plugpos_app;
        GRANT EXECUTE ON FUNCTION prune_security_events(timestamptz) TO plugpos_app;
    END IF;
END
$$;
