-- name: references_names_setup --
-- The last segments of the paths about to be deleted: the values of a file column that end in
-- one of them are the only ones that can name one of those files.
DROP TABLE IF EXISTS retention_ref_names;
CREATE TEMP TABLE retention_ref_names (name text PRIMARY KEY);

-- name: references_names_from_outbox --
INSERT INTO retention_ref_names (name)
SELECT DISTINCT substring(path FROM '[^/]*$')
  FROM retention_file_outbox
 WHERE NOT refused
ON CONFLICT DO NOTHING;

-- name: references_named --
-- The values of one file column that end in one of the names (one scan, a hashed semi-join).
SELECT DISTINCT v.value
  FROM (SELECT {column}::text AS value FROM {table}) v
 WHERE v.value IS NOT NULL AND v.value <> ''
   AND substring(v.value FROM '[^/]*$') IN (SELECT name FROM retention_ref_names);

-- name: references_names_teardown --
DROP TABLE IF EXISTS retention_ref_names;

-- name: references_recheck --
-- Which of these spellings rows reference right now (a row written since the listing), through
-- an index on the column.
SELECT DISTINCT {column}::text FROM {table} WHERE {column} = ANY(%(forms)s::text[]);

-- name: references_recheck_recent --
-- The same among rows written lately (their timestamp within the grace period), through an
-- index on the policy's timestamp.
SELECT DISTINCT {column}::text FROM {table}
 WHERE {timestamp} >= %(since)s AND {column} = ANY(%(forms)s::text[]);
