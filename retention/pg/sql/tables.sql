-- name: table_batch --
-- One batch of the walk over a table's old rows, oldest first, keyset on (timestamp, key).
-- {table}, {ts}, {key} are identifiers from the catalog; {eligible} is the policy's condition
-- (age and filters) composed in tables/planning.py; {lock} is FOR UPDATE OF t SKIP LOCKED or
-- empty. The engine's rows (see engine.batches.Segment): the key (ts, key), the id.
SELECT t.{ts} AS ts, t.{key} AS key, t.{key} AS id
  FROM {table} AS t
 WHERE {eligible}
   AND t.{ts} >= %(after_ts)s::{ts_type}
   AND (t.{ts}, t.{key}) > (%(after_ts)s::{ts_type}, %(after_key)s::{key_type})
   AND t.tableoid <> ALL(%(skip)s::oid[])
 ORDER BY t.{ts}, t.{key}
 LIMIT %(limit)s
 {lock};

-- name: table_oldest --
SELECT min(t.{ts}) FROM {table} AS t WHERE {eligible};

-- name: rows_delete --
-- Delete the matching rows and queue their files, in one statement. {paths} are the file columns
-- as p0, p1...; {files} the (root, path, source) triples built from them.
WITH gone AS (
    DELETE FROM {table} AS t WHERE {match} RETURNING {paths}
), queued AS (
    INSERT INTO retention_file_outbox (root, path, source, run_id)
    SELECT f.root, f.path, f.source, %(run_id)s
      FROM gone AS g CROSS JOIN LATERAL (VALUES {files}) AS f (root, path, source)
     WHERE f.path <> ''
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM queued);

-- name: rows_collect --
-- Queue the files of rows that something else deletes (an ON DELETE CASCADE, a partition drop).
WITH kept AS (
    SELECT {paths} FROM {table} AS t WHERE {match} {lock}
), queued AS (
    INSERT INTO retention_file_outbox (root, path, source, run_id)
    SELECT f.root, f.path, f.source, %(run_id)s
      FROM kept AS g CROSS JOIN LATERAL (VALUES {files}) AS f (root, path, source)
     WHERE f.path <> ''
    RETURNING 1
)
SELECT (SELECT count(*) FROM kept), (SELECT count(*) FROM queued);

-- name: rows_preview --
-- What rows_delete / rows_collect would do, read only: rows and files.
WITH seen AS (
    SELECT {paths} FROM {table} AS t WHERE {match}
)
SELECT (SELECT count(*) FROM seen),
       (SELECT count(*)
          FROM seen AS g CROSS JOIN LATERAL (VALUES {files}) AS f (root, path, source)
         WHERE f.path <> '');

-- name: bounds_before --
-- Which partition upper bounds (exclusive) lie at or before the cutoff.
SELECT b.bound, b.bound::{ts_type} <= %(cutoff)s::{ts_type}
  FROM unnest(%(bounds)s::text[]) AS b (bound)
 ORDER BY b.bound::{ts_type};

-- name: lock_partition --
LOCK TABLE {partition} IN SHARE MODE;

-- name: detach_partition --
ALTER TABLE {table} DETACH PARTITION {partition};

-- name: drop_partition --
DROP TABLE {partition};
