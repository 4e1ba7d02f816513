-- Legal holds: what no retention path deletes while the hold is active (not released, not
-- expired). A hold names jobs (by id, or every job of a queue or task glob) or rows of a policy's
-- table (by key values, by a filter of the same form as `where`, or both: the rows matching
-- both). Every delete statement reads this table itself, so a hold placed during a run protects
-- the rows of the batches after it. A row of this table can only keep things: the deletes use
-- it in NOT EXISTS / NOT IN conditions, and a value that does not read back (a key that does not
-- cast, a bad pattern) makes the delete fail, deleting nothing.
CREATE TABLE retention_holds (
    id bigserial PRIMARY KEY,
    job_ids bigint[],
    queue_glob text,
    queue_re text,
    task_glob text,
    task_re text,
    table_name text,
    keys text[],
    filter jsonb,
    reason text NOT NULL CHECK (btrim(reason) <> ''),
    placed_by text NOT NULL,
    role name NOT NULL DEFAULT current_user,
    placed_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    released_at timestamptz,
    released_by text,
    CHECK (num_nonnulls(job_ids, queue_re, task_re, table_name) = 1),
    CHECK ((queue_glob IS NULL) = (queue_re IS NULL) AND (task_glob IS NULL) = (task_re IS NULL)),
    CHECK (table_name IS NOT NULL OR (keys IS NULL AND filter IS NULL)),
    CHECK (table_name IS NULL OR keys IS NOT NULL OR filter IS NOT NULL),
    CHECK (filter IS NULL OR jsonb_typeof(filter) = 'object'),
    CHECK (queue_re IS NULL OR ('' ~ queue_re) IS NOT NULL),
    CHECK (task_re IS NULL OR ('' ~ task_re) IS NOT NULL)
);

CREATE INDEX retention_holds_active_table_idx ON retention_holds (table_name)
    WHERE released_at IS NULL;
