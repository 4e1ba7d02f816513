-- name: record_archive_file --
-- An archive file a batch wrote, recorded in that batch's transaction.
INSERT INTO retention_archive_files (run_id, target, path, rows, bytes, sha256, format)
VALUES (%(run_id)s, %(target)s, %(path)s, %(rows)s, %(bytes)s, %(sha256)s, %(format)s);

-- name: archive_files --
-- The archive files recorded, newest first, optionally those of one run.
SELECT id, run_id, target, path, rows, bytes, sha256, format, written_at
  FROM retention_archive_files
 WHERE (%(run_id)s::bigint IS NULL OR run_id = %(run_id)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: archive_file_by_path --
SELECT id, run_id, target, path, rows, bytes, sha256, format, written_at
  FROM retention_archive_files WHERE path = %(path)s;

-- name: table_columns_for_restore --
-- The columns a restored row is inserted into (generated columns left out), and the primary
-- key's columns, of one table.
SELECT a.attname,
       coalesce(a.attnum = ANY(i.indkey::int2[]), false) AS in_key
  FROM pg_attribute a
  LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary
 WHERE a.attrelid = %(table)s::regclass
   AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
 ORDER BY a.attnum;
