-- core::db::changes: the server keeps rows every request reads but that change rarely (the
-- caller's session with their roles, the business and its settings, registers with their open
-- cash session, the products sold) in memory. Every statement that writes one of the tables they
-- are read from notifies channel `plugpos_changes` (payload: the table's name); PostgreSQL
-- delivers it when the transaction commits, and the server then forgets every cached row. This
-- covers every writer: the server itself, the CLI, an administrator in psql.

CREATE FUNCTION notify_cached_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('plugpos_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;

DO $$
DECLARE
    watched text;
BEGIN
    FOREACH watched IN ARRAY ARRAY[
        'business', 'settings', 'registers',
        'users', 'roles', 'user_roles', 'role_permissions', 'sessions', 'user_mfa',
        'tax_classes', 'products', 'cash_sessions'
    ] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION notify_cached_change()',
            watched || '_notify_cached_change', watched);
    END LOOP;
END
$$;
