-- name: catalog_relation --
-- A table by the name a policy gives it (schema-qualified or on the search_path).
SELECT c.oid, n.nspname, c.relname, c.relkind::text
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = to_regclass(%(name)s);

-- name: catalog_columns --
SELECT a.attname, a.attnum, format_type(a.atttypid, a.atttypmod), t.typname, t.typcategory::text
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum;

-- name: catalog_unique_keys --
-- Valid, non-partial unique indexes (the primary key first), as lists of column names.
SELECT i.indisprimary,
       array_agg(a.attname ORDER BY k.ord)
  FROM pg_index i
 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = %(oid)s AND i.indisunique AND i.indpred IS NULL
   AND k.ord <= i.indnkeyatts
 GROUP BY i.indexrelid, i.indisprimary
 ORDER BY i.indisprimary DESC, i.indexrelid;

-- name: catalog_leading_index --
-- Whether some valid index of the table starts with the column (no expression, no predicate).
SELECT EXISTS (
    SELECT 1 FROM pg_index i
     WHERE i.indrelid = %(oid)s AND i.indisvalid AND i.indpred IS NULL
       AND i.indkey[0] = %(attnum)s);

-- name: catalog_foreign_keys --
-- Foreign keys referencing a table: the referencing table, its columns, the referenced columns,
-- and the ON DELETE action (a no action, r restrict, c cascade, n set null, d set default).
SELECT con.conname, child.oid, cn.nspname, child.relname,
       array_agg(ca.attname ORDER BY k.ord), array_agg(pa.attname ORDER BY k.ord),
       con.confdeltype::text
  FROM pg_constraint con
  JOIN pg_class child ON child.oid = con.conrelid
  JOIN pg_namespace cn ON cn.oid = child.relnamespace
 CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY AS k (child_att, parent_att, ord)
  JOIN pg_attribute ca ON ca.attrelid = con.conrelid AND ca.attnum = k.child_att
  JOIN pg_attribute pa ON pa.attrelid = con.confrelid AND pa.attnum = k.parent_att
 WHERE con.contype = 'f' AND con.confrelid = %(oid)s AND con.conparentid = 0
 GROUP BY con.oid, con.conname, child.oid, cn.nspname, child.relname, con.confdeltype
 ORDER BY cn.nspname, child.relname, con.conname;

-- name: catalog_partitioning --
SELECT p.partstrat::text, p.partnatts, p.partattrs[0]
  FROM pg_partitioned_table p
 WHERE p.partrelid = %(oid)s;

-- name: catalog_partitions --
SELECT c.oid, n.nspname, c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE i.inhparent = %(oid)s
 ORDER BY c.relname;

-- name: catalog_protected --
-- Tables retention never deletes from, among those a DELETE on %(oids)s reaches: the tables
-- themselves, their partitions and inheritance children, the tables their ON DELETE CASCADE /
-- SET NULL / SET DEFAULT foreign keys change, again and again; and the tables they are
-- partitions or inheritance children of. Protected: Procrastinate's (procrastinate_*, wherever
-- they are) and ours (retention_* in the schema of our own tables). By OID: a schema-qualified,
-- quoted or search_path spelling of a name resolves to the same table.
WITH RECURSIVE reach (oid) AS (
    SELECT unnest(%(oids)s::oid[])
    UNION
    SELECT x.oid
      FROM reach AS r
     CROSS JOIN LATERAL (
         SELECT i.inhrelid FROM pg_inherits AS i WHERE i.inhparent = r.oid
         UNION ALL
         SELECT con.conrelid FROM pg_constraint AS con
          WHERE con.contype = 'f' AND con.confrelid = r.oid AND con.confdeltype IN ('c', 'n', 'd')
     ) AS x (oid)
), above (oid) AS (
    SELECT unnest(%(oids)s::oid[])
    UNION
    SELECT i.inhparent FROM pg_inherits AS i JOIN above AS a ON i.inhrelid = a.oid
), ours AS (
    SELECT c.relnamespace
      FROM pg_class AS c
     WHERE c.oid IN (to_regclass('retention_migrations'), to_regclass('retention_runs'),
                     to_regclass('retention_file_outbox'))
)
SELECT c.oid, n.nspname, c.relname, c.relname LIKE 'procrastinate\_%%' AS procrastinate
  FROM pg_class AS c
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE c.oid IN (SELECT oid FROM reach UNION SELECT oid FROM above)
   AND (c.relname LIKE 'procrastinate\_%%'
        OR (c.relname LIKE 'retention\_%%' AND c.relnamespace IN (SELECT relnamespace FROM ours)))
 ORDER BY n.nspname, c.relname;

-- name: catalog_delete_hooks --
-- What a DELETE on a table fires that a partition drop would not: DELETE triggers (enabled, not
-- a foreign key's internal ones) and DELETE rules, on the table and every table below it.
WITH RECURSIVE tree (oid) AS (
    SELECT %(oid)s::oid
    UNION
    SELECT i.inhrelid FROM pg_inherits AS i JOIN tree AS t ON i.inhparent = t.oid
)
SELECT 'trigger' AS kind, c.oid, n.nspname, c.relname, tg.tgname AS name
  FROM tree
  JOIN pg_trigger AS tg ON tg.tgrelid = tree.oid
  JOIN pg_class AS c ON c.oid = tree.oid
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE NOT tg.tgisinternal AND tg.tgenabled <> 'D' AND (tg.tgtype & 8) <> 0
UNION ALL
SELECT 'rule', c.oid, n.nspname, c.relname, r.rulename
  FROM tree
  JOIN pg_rewrite AS r ON r.ev_class = tree.oid
  JOIN pg_class AS c ON c.oid = tree.oid
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE r.ev_type = '4'
 ORDER BY 1, 3, 4, 5;

-- name: catalog_owns_tree --
-- Whether the current role may DETACH and DROP the table's partitions: it owns (is a member of
-- the owner of) the table and every partition.
WITH RECURSIVE tree (oid) AS (
    SELECT %(oid)s::oid
    UNION
    SELECT i.inhrelid FROM pg_inherits AS i JOIN tree AS t ON i.inhparent = t.oid
)
SELECT bool_and(pg_has_role(c.relowner, 'USAGE'))
  FROM tree
  JOIN pg_class AS c ON c.oid = tree.oid;
