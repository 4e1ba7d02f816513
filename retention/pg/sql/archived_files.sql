-- name: record_archived_files --
-- The copies of a drain's files (archive_files), recorded after each copy is durable and before
-- its file is unlinked; one row per outbox entry: a drain that copies an entry's file again
-- (killed before the unlink, last time) updates that row.
INSERT INTO retention_archived_files (run_id, outbox_id, root, path, archive_path, bytes, sha256)
SELECT %(run_id)s, c.outbox_id, c.root, c.path, c.archive_path, c.bytes, c.sha256
  FROM unnest(%(outbox_ids)s::bigint[], %(roots)s::text[], %(paths)s::text[],
              %(archive_paths)s::text[], %(bytes)s::bigint[], %(sha256s)s::text[])
       AS c (outbox_id, root, path, archive_path, bytes, sha256)
    ON CONFLICT (outbox_id) DO UPDATE
   SET run_id = excluded.run_id, archive_path = excluded.archive_path, bytes = excluded.bytes,
       sha256 = excluded.sha256, archived_at = excluded.archived_at;

-- name: archived_files --
-- The copied files recorded, newest first, optionally those of one run.
SELECT id, run_id, root, path, archive_path, bytes, sha256, archived_at
  FROM retention_archived_files
 WHERE (%(run_id)s::bigint IS NULL OR run_id = %(run_id)s::bigint)
 ORDER BY id DESC
 LIMIT %(limit)s;
