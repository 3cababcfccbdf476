-- core::jobs: the job queue and the persisted last runs of schedules.
-- Backups are not tables here: their manifests live next to the files in <data_dir>/backups, so a
-- restore (which replaces this database) never loses track of them.

CREATE TABLE jobs (
    id            uuid        PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.]{0,63}$'),
    payload       jsonb       NOT NULL DEFAULT '{}',
    -- queued: waiting; running: claimed by a worker; failed: the last attempt failed, another
    -- follows at run_at; succeeded, dead (no attempt left): final.
    status        text        NOT NULL DEFAULT 'queued'
                              CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead')),
    -- At most one queued, running or failed (waiting to retry) job per key.
    unique_key    text        CHECK (length(unique_key) <= 200),
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer     NOT NULL CHECK (max_attempts >= 1),
    run_at        timestamptz NOT NULL,
    started_at    timestamptz,
    heartbeat_at  timestamptz,
    finished_at   timestamptz,
    last_error    text,
    progress      jsonb,
    result        jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'running' OR heartbeat_at IS NOT NULL)
);
CREATE UNIQUE INDEX jobs_unique_pending ON jobs (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('queued', 'running', 'failed');
-- The claim query: due work in order.
CREATE INDEX jobs_due ON jobs (run_at, id) WHERE status IN ('queued', 'failed');
CREATE INDEX jobs_running ON jobs (heartbeat_at) WHERE status = 'running';
CREATE INDEX jobs_by_kind ON jobs (kind, created_at);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('succeeded', 'dead');

-- The last occurrence of each schedule that was acted on (enqueued), in UTC. A run is due when
-- the cron expression has an occurrence after it and not after now; however many were missed,
-- one job is enqueued.
CREATE TABLE schedule_runs (
    name         text        PRIMARY KEY,
    last_due_at  timestamptz NOT NULL,
    last_job_id  uuid,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
