-- name: table_count_bound --
-- The newest row a `keep_last` / `max_count` policy keeps last, as (timestamp, key): the N-th
-- newest (by timestamp, then key) of the rows matching the policy's filters in the group of the
-- row `t` ({same_group}: `n.c = t.c` per `per` column, or `true`). A row strictly older is
-- beyond the newest N. No such row (fewer than N): NULL, so that no comparison with it holds.
-- Read by the statement it is part of, in that statement's snapshot. With an index on (per
-- columns..., timestamp, key), a backward scan of N entries of that group.
(SELECT n.{ts}, n.{key} FROM {table} AS n
  WHERE {same_group} AND {filters} AND n.{ts} IS NOT NULL
  ORDER BY n.{ts} DESC, n.{key} DESC
 OFFSET {offset} LIMIT 1)

-- name: catalog_index_on_columns --
-- Whether some valid index of the table (no expression, no predicate) starts with exactly these
-- columns, in this order.
SELECT EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = %(oid)s AND i.indisvalid AND i.indpred IS NULL
       AND (string_to_array(i.indkey::text, ' ')::int[])[1:cardinality(%(attnums)s::int[])]
           = %(attnums)s::int[]);
