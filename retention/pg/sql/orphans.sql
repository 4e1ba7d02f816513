-- name: orphan_setup --
-- Paths that rows reference, relative to the swept root, and symlinks inside that root.
-- retention_normpath is os.path.normpath for absolute paths: '', '.' and '..' segments resolved.
DROP TABLE IF EXISTS retention_orphan_refs;
CREATE TEMP TABLE retention_orphan_refs (rel bytea NOT NULL, round integer NOT NULL DEFAULT 0);
DROP TABLE IF EXISTS retention_orphan_links;
CREATE TEMP TABLE retention_orphan_links (link bytea NOT NULL, target bytea NOT NULL);
CREATE OR REPLACE FUNCTION pg_temp.retention_normpath(path text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    kept text[] := '{}';
    part text;
BEGIN
    FOREACH part IN ARRAY string_to_array(path, '/') LOOP
        IF part = '' OR part = '.' THEN
            CONTINUE;
        ELSIF part = '..' THEN
            kept := kept[1:cardinality(kept) - 1];
        ELSE
            kept := kept || part;
        END IF;
    END LOOP;
    RETURN '/' || array_to_string(kept, '/');
END
$$;

-- name: orphan_refs_insert --
-- The values of one file column, made absolute with the column's root, normalised, and kept when
-- they lie under the swept root (either spelling of it: as configured or with symlinks resolved).
INSERT INTO retention_orphan_refs (rel)
SELECT convert_to(CASE WHEN left(n.path, %(len1)s) = %(prefix1)s THEN substr(n.path, %(len1)s + 1)
                       ELSE substr(n.path, %(len2)s + 1) END, 'UTF8')
  FROM (
      SELECT CASE WHEN a.path ~ '//|/\.\.?(/|$)|/$' THEN pg_temp.retention_normpath(a.path)
                  ELSE a.path END AS path
        FROM (
            SELECT CASE WHEN left(v.value, 1) = '/' THEN v.value
                        ELSE %(column_root)s || '/' || v.value END AS path
              FROM (SELECT {column}::text AS value FROM {table}) v
             WHERE v.value IS NOT NULL AND v.value <> ''
               AND (NOT %(relative_only)s OR left(v.value, 1) <> '/')
        ) a
  ) n
 WHERE left(n.path, %(len1)s) = %(prefix1)s OR left(n.path, %(len2)s) = %(prefix2)s;

-- name: orphan_links_copy --
COPY retention_orphan_links (link, target) FROM STDIN (FORMAT BINARY);

-- name: orphan_refs_through_links --
-- A referenced path through a symlink inside the root also references the file it leads to.
INSERT INTO retention_orphan_refs (rel, round)
SELECT l.target || substr(r.rel, length(l.link) + 1), %(round)s
  FROM retention_orphan_refs r
  JOIN retention_orphan_links l
    ON r.rel = l.link
    OR substr(r.rel, 1, length(l.link) + 1) = l.link || '\x2f'::bytea
 WHERE r.round = %(round)s - 1;

-- name: orphan_drop_referenced --
DELETE FROM {table} f USING retention_orphan_refs r WHERE r.rel = f.rel;

-- name: orphan_teardown --
DROP TABLE IF EXISTS retention_orphan_refs;
DROP TABLE IF EXISTS retention_orphan_links;

-- name: orphan_foreign_refs --
-- The values of one file column that, made absolute and normalised, lie under neither spelling
-- of the swept root: another spelling of a directory inside it (a symlink, a bind mount) is
-- looked for on disk.
SELECT DISTINCT n.path
  FROM (
      SELECT CASE WHEN a.path ~ '//|/\.\.?(/|$)|/$' THEN pg_temp.retention_normpath(a.path)
                  ELSE a.path END AS path
        FROM (
            SELECT CASE WHEN left(v.value, 1) = '/' THEN v.value
                        ELSE %(column_root)s || '/' || v.value END AS path
              FROM (SELECT {column}::text AS value FROM {table}) v
             WHERE v.value IS NOT NULL AND v.value <> ''
        ) a
  ) n
 WHERE left(n.path, %(len1)s) <> %(prefix1)s AND left(n.path, %(len2)s) <> %(prefix2)s;

-- name: orphan_refs_copy --
COPY retention_orphan_refs (rel) FROM STDIN (FORMAT BINARY);

-- name: storage_refs_insert --
-- The names one file column stores for a storage, normalised as relative names (empty, `.` and
-- `..` segments resolved): what the storage's listing is matched with.
INSERT INTO retention_orphan_refs (rel)
SELECT convert_to(ltrim(CASE WHEN v.value ~ '//|(^|/)\.\.?(/|$)|/$|^/'
                             THEN pg_temp.retention_normpath('/' || v.value)
                             ELSE '/' || v.value END, '/'), 'UTF8')
  FROM (SELECT {column}::text AS value FROM {table}) v
 WHERE v.value IS NOT NULL AND v.value <> '';
