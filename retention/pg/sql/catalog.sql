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
