-- Issue 30, review: a return's lines come with it, and cash sessions respect closed periods.

-- A line is accepted only in the transaction that inserted its return or void (as sale lines
-- with their sale, 0016/0017): a stored correction cannot gain lines later.
CREATE FUNCTION return_lines_come_with_their_return() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doc uuid;
BEGIN
    FOR doc IN SELECT DISTINCT return_id FROM new_lines LOOP
        PERFORM 1 FROM returns WHERE id = doc AND xmin = pg_current_xact_id()::xid;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'a line must be recorded with its return or void, in the transaction that records it'
                USING ERRCODE = 'integrity_constraint_violation', CONSTRAINT = 'return_lines_with_their_return';
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;
CREATE TRIGGER return_lines_with_their_return AFTER INSERT ON return_lines
    REFERENCING NEW TABLE AS new_lines FOR EACH STATEMENT EXECUTE FUNCTION return_lines_come_with_their_return();

-- A cash session is not closed inside a closed day: its close (expected, counted, variance) is
-- what a day's cash figures count. (It may be opened: nothing can be sold, given back or moved
-- in it until the next business day begins, when it is closed into that day.)
CREATE OR REPLACE FUNCTION refuse_closed_period() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM closings WHERE kind = 'day') THEN
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME IN ('sales', 'returns') THEN
        PERFORM 1 FROM new_rows n JOIN registers r ON r.id = n.register_id
         WHERE n.created_at < (SELECT max(c.period_end) FROM closings c WHERE c.kind = 'day' AND c.branch_id = r.branch_id)
         LIMIT 1;
    ELSIF TG_TABLE_NAME = 'cash_sessions' THEN
        PERFORM 1 FROM new_rows n JOIN registers r ON r.id = n.register_id
         WHERE n.closed_at < (SELECT max(c.period_end) FROM closings c WHERE c.kind = 'day' AND c.branch_id = r.branch_id)
         LIMIT 1;
    ELSIF TG_TABLE_NAME = 'cash_movements' THEN
        PERFORM 1 FROM new_rows n JOIN cash_sessions s ON s.id = n.cash_session_id JOIN registers r ON r.id = s.register_id
         WHERE n.created_at < (SELECT max(c.period_end) FROM closings c WHERE c.kind = 'day' AND c.branch_id = r.branch_id)
         LIMIT 1;
    ELSE
        PERFORM 1 FROM new_rows n JOIN locations l ON l.id = n.location_id
         WHERE n.created_at < (SELECT max(c.period_end) FROM closings c WHERE c.kind = 'day' AND c.branch_id = l.branch_id)
         LIMIT 1;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'the business day this is dated in is closed'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'period_closed';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER cash_sessions_closed_in_open_period AFTER UPDATE ON cash_sessions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION refuse_closed_period();
