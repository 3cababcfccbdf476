-- Issue 36: the admin console's cookie sessions. A console sign-in opens an ordinary session (the
-- same login, MFA, throttling, expiry, logout and revocation as the API) and this row binds the
-- browser's cookie to it: the cookie holds a random secret whose SHA-256 is kept here, with the
-- session's CSRF token, which every form of the console carries.
CREATE TABLE console_sessions (
    secret_hash bytea       PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    csrf_token  text        NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX console_sessions_by_session ON console_sessions (session_id);
