-- The file outbox: paths of files whose rows were deleted, queued in the same transaction as the
-- delete, unlinked after commit. A row leaves the outbox once its file is gone; a file that cannot
-- be deleted keeps its row (attempts, last error) and is retried by later runs. A path that
-- escapes its root is recorded as refused and never deleted.
CREATE TABLE retention_file_outbox (
    id bigserial PRIMARY KEY,
    root text NOT NULL,
    path text NOT NULL,
    source text NOT NULL,
    run_id bigint,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    last_attempt_at timestamptz,
    refused boolean NOT NULL DEFAULT false
);

CREATE INDEX retention_file_outbox_pending_idx ON retention_file_outbox (id) WHERE NOT refused;
