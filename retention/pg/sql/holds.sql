-- name: hold_active --
-- The condition that the hold `h` holds now: not released, not expired. One text for every
-- statement that reads holds.
h.released_at IS NULL AND (h.expires_at IS NULL OR h.expires_at > statement_timestamp())

-- name: job_held --
-- The condition that the job `job` is held now: its id is in an active hold's ids, or its queue
-- or task matches an active hold's pattern. Uncorrelated subqueries, computed once per statement
-- whatever the number of holds: the ids as a hashed set, the patterns as one alternation each.
-- Read by the delete statement itself (a hold placed while a run is in progress protects the
-- rows of every later batch). The ids' IN is NULL, never false, when a hold's ids hold a NULL:
-- the job is then kept, as with any row of this table a delete cannot read.
-- A name goes through the alternation only when it is LIKE one of the globs' glob_like patterns
-- (a cheap test that every name the alternation matches passes; the alternation decides): the
-- alternation of 10 anchored patterns cost PostgreSQL's regex engine 7 to 10 us a name, against
-- 0.3 us for the LIKE test, and over every job a prune deletes that was most of the cost of the
-- holds (BENCHMARKS.md).
({job}.id IN (SELECT unnest(h.job_ids) FROM retention_holds h
               WHERE h.job_ids IS NOT NULL AND {active})
 OR ({job}.queue_name LIKE ANY(ARRAY(SELECT {queue_like} FROM retention_holds h
                                      WHERE h.queue_glob IS NOT NULL AND {active}))
     AND coalesce({job}.queue_name ~ (SELECT string_agg('(?:' || h.queue_re || ')', '|')
                                        FROM retention_holds h
                                       WHERE h.queue_re IS NOT NULL AND {active}), false))
 OR ({job}.task_name LIKE ANY(ARRAY(SELECT {task_like} FROM retention_holds h
                                     WHERE h.task_glob IS NOT NULL AND {active}))
     AND coalesce({job}.task_name ~ (SELECT string_agg('(?:' || h.task_re || ')', '|')
                                       FROM retention_holds h
                                      WHERE h.task_re IS NOT NULL AND {active}), false)))

-- name: glob_like --
-- The LIKE pattern of the glob `glob` (retention/config/globs.py's syntax) that every name the
-- glob matches is LIKE: LIKE's own characters (\ % _) escaped, `*` as %, `?` as _; from the
-- first `[` on, % (a bracket's reading by the regex engine, `[[:alpha:]]` or `[!]`, is left to
-- the regular expression). `%%` is one % in a statement run with parameters, and two (which LIKE
-- reads as one) in a statement run without.
(replace(replace(regexp_replace(split_part({glob}, '[', 1), '([\\%%_])', '\\\1', 'g'),
                 '*', '%%'), '?', '_')
 || CASE WHEN strpos({glob}, '[') > 0 THEN '%%' ELSE '' END)

-- name: hold_matches_row --
-- The condition that the active hold `h` on the table `table` names the row `row`: one of its
-- keys (cast to the key's type), and every column of its filter (each one's values cast to the
-- column's type; `filter` is composed in holds/conditions.py from the table's columns).
h.table_name = {table} AND {active}
AND (h.keys IS NULL OR {row}.{key} = ANY(h.keys::{key_type}[]))
AND (h.filter IS NULL OR ({filter}))

-- name: row_held --
-- The condition that the row `row` is held now (see hold_matches_row).
EXISTS (SELECT 1 FROM retention_holds h WHERE {matches})

-- name: partition_held --
-- Whether the partition `partition` holds a row an active hold names: driven by the holds (a
-- key probe for a hold by key), so that it costs nothing for a table no hold names.
SELECT EXISTS (
    SELECT 1 FROM retention_holds h
     WHERE h.table_name = {table} AND {active}
       AND EXISTS (SELECT 1 FROM {partition} AS t WHERE {matches}));

-- name: held_rows_count --
-- How many rows a table policy would delete now that an active hold keeps: driven by the holds
-- (a key probe for a hold by key); `eligible` is the policy's own condition (age, filters).
SELECT count(DISTINCT x.k)
  FROM retention_holds h
 CROSS JOIN LATERAL (SELECT t.{key} AS k FROM {relation} AS t WHERE {matches} AND {eligible}) x
 WHERE h.table_name = {table};

-- name: holds_on_table --
-- Whether any active hold names rows of the table (the count above is skipped otherwise).
SELECT EXISTS (SELECT 1 FROM retention_holds h WHERE h.table_name = %(table)s AND {active});

-- name: holds_on_jobs --
SELECT EXISTS (SELECT 1 FROM retention_holds h WHERE h.table_name IS NULL AND {active});

-- name: hold_insert --
INSERT INTO retention_holds
       (job_ids, queue_glob, queue_re, task_glob, task_re, table_name, keys, filter, reason,
        placed_by, expires_at)
VALUES (%(job_ids)s, %(queue_glob)s, %(queue_re)s, %(task_glob)s, %(task_re)s, %(table_name)s,
        %(keys)s, %(filter)s, %(reason)s, %(placed_by)s, %(expires_at)s)
RETURNING id;

-- name: hold_release --
-- Release an active hold; returns nothing for a hold that is unknown or already released.
UPDATE retention_holds SET released_at = now(), released_by = %(by)s
 WHERE id = %(id)s AND released_at IS NULL
RETURNING id;

-- name: hold_get --
SELECT id, released_at FROM retention_holds WHERE id = %(id)s;

-- name: holds_list --
-- Every hold (or only the active ones), newest first, with whether it holds now.
SELECT h.id, h.job_ids, h.queue_glob, h.task_glob, h.table_name, h.keys, h.filter, h.reason,
       h.placed_by, h.role::text AS role, h.placed_at, h.expires_at, h.released_at,
       h.released_by, ({active}) AS active
  FROM retention_holds h
 WHERE %(all)s OR ({active})
 ORDER BY h.id DESC;

-- name: holds_counts --
-- Active holds by kind, for status, the metrics and the ledger.
SELECT count(*) FILTER (WHERE h.table_name IS NULL) AS jobs,
       count(*) FILTER (WHERE h.table_name IS NOT NULL) AS rows,
       min(h.expires_at) AS next_expiry
  FROM retention_holds h
 WHERE {active};

-- name: holds_in_force --
-- The active holds, for a run's summary: how many in all and by kind, and the first `limit`
-- ids (in id order).
SELECT count(*) AS active,
       count(*) FILTER (WHERE h.table_name IS NULL) AS jobs,
       count(*) FILTER (WHERE h.table_name IS NOT NULL) AS rows,
       coalesce((array_agg(h.id ORDER BY h.id))[1:%(limit)s], '{{}}') AS ids
  FROM retention_holds h
 WHERE {active};

-- name: holds_present --
-- Whether the holds table exists (a database migrated before holds had none).
SELECT to_regclass('retention_holds') IS NOT NULL;

-- name: held_jobs_by_hold --
-- The jobs of `matched` (a CTE body with columns id, queue, task) that active holds keep: how
-- many in all, and per hold its id, reason and how many of them it names.
WITH matched AS (
    {matched}
), held AS (
    SELECT h.id, h.reason, count(*) AS jobs
      FROM retention_holds h
      JOIN matched m
        ON (m.id = ANY(h.job_ids) OR coalesce(m.queue ~ h.queue_re, false)
            OR coalesce(m.task ~ h.task_re, false))
     WHERE h.table_name IS NULL AND {active}
     GROUP BY h.id, h.reason
)
SELECT (SELECT count(*) FROM matched) AS total,
       coalesce((SELECT jsonb_agg(jsonb_build_object('hold', held.id, 'reason', held.reason,
                                                     'jobs', held.jobs) ORDER BY held.id)
                   FROM held), '[]'::jsonb) AS by_hold;
