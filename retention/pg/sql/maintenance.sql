-- name: maintenance_tables --
-- The pruned tables: their schema, whether the current role may maintain them (owner, member of
-- the owner, or superuser), their owner and their total size.
SELECT c.relname AS name, n.nspname AS schema, pg_get_userbyid(c.relowner) AS owner,
       pg_has_role(current_user, c.relowner, 'USAGE') AS may, pg_total_relation_size(c.oid) AS bytes
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY (ARRAY[to_regclass('procrastinate_jobs'), to_regclass('procrastinate_events')])
 ORDER BY c.relname;

-- name: maintenance_jobs_left --
SELECT count(*) FROM procrastinate_jobs;

-- name: maintenance_has_pgstattuple --
SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgstattuple');

-- name: maintenance_indexes_pgstattuple --
-- Each btree index of the table: its size and the free share of its leaf pages (pgstatindex).
SELECT ic.relname, pg_relation_size(ic.oid) AS bytes,
       CASE WHEN s.leaf_pages = 0 OR s.avg_leaf_density = 'NaN' THEN 0.0
            ELSE 1 - s.avg_leaf_density / 100 END AS bloat
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
 CROSS JOIN LATERAL pgstatindex(ic.oid::regclass) s
 WHERE i.indrelid = %(table)s::regclass
 ORDER BY ic.relname;

-- name: maintenance_indexes_estimate --
-- Each index of the table: its size and an estimate of its free share from the catalog: the
-- pages its entries need (reltuples x (8 bytes of header and item pointer + the columns' widths,
-- from attlen or pg_stats), at a btree fill of 0.9) against relpages. ANALYZE first: reltuples.
SELECT ic.relname, pg_relation_size(ic.oid) AS bytes,
       CASE WHEN ic.relpages <= 1 THEN 0.0
            ELSE greatest(0.0, 1 - (1 + ceil(greatest(ic.reltuples, 0) * (8 + w.width)
                                         / (current_setting('block_size')::float8 * 0.9)))
                                   / ic.relpages) END AS bloat
  FROM pg_index i
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
 CROSS JOIN LATERAL (
     SELECT coalesce(sum(CASE WHEN a.attlen > 0 THEN a.attlen ELSE coalesce(s.avg_width, 32) END), 8)
            AS width
       FROM pg_attribute a
       LEFT JOIN pg_stats s ON s.schemaname = t.relnamespace::regnamespace::text
                           AND s.tablename = t.relname AND s.attname = a.attname
      WHERE a.attrelid = ic.oid AND a.attnum > 0
 ) w
 WHERE i.indrelid = %(table)s::regclass
 ORDER BY ic.relname;
