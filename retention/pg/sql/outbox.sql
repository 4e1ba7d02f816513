-- name: outbox_enqueue --
INSERT INTO retention_file_outbox (root, path, source, run_id)
SELECT i.root, i.path, i.source, %(run_id)s
  FROM unnest(%(roots)s::text[], %(paths)s::text[], %(sources)s::text[]) AS i (root, path, source)
 WHERE i.path IS NOT NULL AND i.path <> '';

-- name: outbox_transaction --
-- A drain transaction only forgets entries whose files are already gone: if a crash loses its
-- commit, the entries come back and their files count as missing. No need to wait for the flush.
SET LOCAL synchronous_commit = off;

-- name: outbox_try_lock --
-- One drain at a time: entries are read without row locks (a file's unlink happens outside any
-- transaction), so two drains would only do the same work twice.
SELECT pg_try_advisory_lock(hashtext('retention_file_outbox'));

-- name: outbox_unlock --
SELECT pg_advisory_unlock(hashtext('retention_file_outbox'));

-- name: outbox_batch --
-- The next pending entries after a given id, up to the newest one when the drain started (their
-- names are those the drain read the file columns for), and whether each is archived first.
SELECT id, root, path, archive
  FROM retention_file_outbox
 WHERE NOT refused AND id > %(after)s AND id <= %(upto)s
 ORDER BY id
 LIMIT %(limit)s;

-- name: outbox_done --
DELETE FROM retention_file_outbox WHERE id = ANY(%(ids)s::bigint[]);

-- name: outbox_failed --
UPDATE retention_file_outbox o
   SET attempts = o.attempts + 1, last_error = f.error, last_attempt_at = now()
  FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS f (id, error)
 WHERE o.id = f.id;

-- name: outbox_refused --
UPDATE retention_file_outbox o
   SET refused = true, last_error = f.error, last_attempt_at = now()
  FROM unnest(%(ids)s::bigint[], %(errors)s::text[]) AS f (id, error)
 WHERE o.id = f.id;

-- name: outbox_backlog --
SELECT count(*) FILTER (WHERE NOT refused),
       count(*) FILTER (WHERE NOT refused AND attempts > 0),
       count(*) FILTER (WHERE refused),
       min(enqueued_at) FILTER (WHERE NOT refused)
  FROM retention_file_outbox;

-- name: outbox_failures --
SELECT id, root, path, source, attempts, last_error, last_attempt_at
  FROM retention_file_outbox
 WHERE attempts > 0 OR refused
 ORDER BY refused, last_attempt_at DESC NULLS LAST, id
 LIMIT %(limit)s;

-- name: outbox_newest --
SELECT coalesce(max(id), 0) FROM retention_file_outbox WHERE NOT refused;
