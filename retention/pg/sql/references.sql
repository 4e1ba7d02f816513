-- name: references_named_in_outbox --
-- The values of one file column whose last segment is the last segment of a pending outbox entry
-- (up to the newest entry when the drain started): the only values that can name one of their
-- files. One scan of the column, a hashed semi-join.
SELECT DISTINCT v.value
  FROM (SELECT {column}::text AS value FROM {table}) v
 WHERE v.value <> ''
   AND reverse(split_part(reverse(v.value), '/', 1)) IN (
       SELECT reverse(split_part(reverse(o.path), '/', 1))
         FROM retention_file_outbox o
        WHERE NOT o.refused AND o.id <= %(upto)s);

-- name: references_recheck --
-- Which of these spellings rows reference right now (a row written since the listing), through
-- an index on the column.
SELECT DISTINCT {column}::text FROM {table} WHERE {column} = ANY(%(forms)s::text[]);

-- name: references_recheck_recent --
-- The same among rows written lately (their timestamp within the grace period), through an
-- index on the policy's timestamp.
SELECT DISTINCT {column}::text FROM {table}
 WHERE {timestamp} >= %(since)s AND {column} = ANY(%(forms)s::text[]);
