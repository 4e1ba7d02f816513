-- The run ledger: one row per retention run, dry run, purge or sweep.
CREATE TABLE retention_runs (
    id bigserial PRIMARY KEY,
    kind text NOT NULL DEFAULT 'run',
    trigger text NOT NULL CHECK (trigger IN ('periodic', 'deferred', 'cli')),
    dry_run boolean NOT NULL DEFAULT false,
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed', 'aborted', 'abandoned')),
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    heartbeat_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    stage text,
    progress real,
    settings jsonb NOT NULL DEFAULT '{}',
    summary jsonb NOT NULL DEFAULT '{}',
    error text,
    host text,
    pid integer,
    backend_pid integer,
    backend_start timestamptz
);

CREATE INDEX retention_runs_started_at_idx ON retention_runs (started_at DESC);
CREATE INDEX retention_runs_running_idx ON retention_runs (id) WHERE status = 'running';
