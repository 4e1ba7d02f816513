-- name: table_batch --
-- One batch of the walk over a table's old rows, oldest first, keyset on (timestamp, key).
-- `table`, `ts`, `key` are identifiers from the catalog; `eligible` is the policy's condition
-- (age and filters) composed in tables/planning.py; `lock` is FOR UPDATE OF t SKIP LOCKED or
-- empty. The engine's rows (see engine.batches.Segment): the key (ts, key, after), the id.
-- `after` is 0 only in the start key (-infinity, the smallest key of the rows dated -infinity,
-- 0), which takes that row too; every batch after it goes strictly past its last row (1).
SELECT t.{ts} AS ts, t.{key} AS key, 1 AS after, t.{key} AS id
  FROM {table} AS t
 WHERE {eligible}
   AND t.{ts} >= %(after_ts)s::{ts_type}
   AND (t.{ts}, t.{key}, 1) > (%(after_ts)s::{ts_type}, %(after_key)s::{key_type}, %(after)s::int)
   AND t.tableoid <> ALL(%(skip)s::oid[])
 ORDER BY t.{ts}, t.{key}
 LIMIT %(limit)s
 {lock};

-- name: table_oldest --
-- Where the walk starts: the oldest finite timestamp of the eligible rows (for the progress),
-- and the smallest key of the eligible rows dated -infinity (which sort before any other).
SELECT (SELECT min(t.{ts}) FROM {table} AS t WHERE {eligible} AND isfinite(t.{ts})),
       (SELECT t.{key} FROM {table} AS t
         WHERE {eligible} AND t.{ts} = '-infinity'::{ts_type}
         ORDER BY t.{key} LIMIT 1);

-- name: tree_delete --
-- One batch of a table policy in one statement. `rows` deletes the batch's rows (a BEFORE DELETE
-- trigger may keep some) and returns their file columns (p0, p1...) and the columns the children
-- reference (r0, r1...); `children` are CTEs over the children of exactly the rows that went:
-- c0, c1... delete them (a cascading child too: a child a trigger keeps is then seen, and the
-- cascade finds nothing left), s0, s1... see them (children whose foreign key would not stop
-- the delete). `files` is (root, path, source) of the rows each DELETE returned, so no file of a
-- row that stays is queued. `child_rows` counts the children deleted, `held` those kept. With
-- archiving, the last placeholder adds the batch's archive lines (the rows, then each child's)
-- and their number, from what the DELETEs returned (to_jsonb of each row, as `a`).
-- `archive_files` is true for a policy whose files the drain copies into the archive before it
-- unlinks them (archive_files = true), else false.
WITH gone AS (
    {rows}
){children}, files (root, path, source) AS (
    {files}
), queued AS (
    INSERT INTO retention_file_outbox (root, path, source, run_id, archive)
    SELECT f.root, f.path, f.source, %(run_id)s, {archive_files}
      FROM files AS f WHERE f.path <> ''
    RETURNING 1
)
SELECT (SELECT count(*) FROM gone) AS deleted, {child_rows} AS child_rows,
       (SELECT count(*) FROM queued) AS files_queued, {held} AS held{archive};

-- name: tree_preview --
-- What tree_delete would do, read only: the same CTEs selecting instead of deleting.
WITH gone AS (
    {rows}
){children}, files (root, path, source) AS (
    {files}
)
SELECT (SELECT count(*) FROM gone) AS deleted, {child_rows} AS child_rows,
       (SELECT count(*) FROM files AS f WHERE f.path <> '') AS files_queued, 0 AS held;

-- name: tree_held --
-- Which rows of the batch have a child that a trigger keeps: their children deleted in a
-- savepoint rolled back afterwards, the rows themselves untouched. `children`: c0, s0... as in
-- tree_delete, over `rows` (the batch's rows, read); `held_keys`: the keys of those rows.
WITH gone AS (
    {rows}
){children}
SELECT {held_keys} AS keys;

-- name: rows_delete --
-- Delete the matching rows and queue their files, in one statement. `paths` are the file columns
-- as p0, p1...; `files` the (root, path, source) triples built from them.
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
-- Queue the files of a partition's rows before it is dropped (locked in SHARE mode: no row
-- changes meanwhile, and no row trigger can keep a row of a dropped partition).
WITH kept AS (
    SELECT {paths} FROM {table} AS t WHERE {match}
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
