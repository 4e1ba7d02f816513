-- name: outbox_enqueue --
INSERT INTO retention_file_outbox (root, path, source, run_id)
SELECT i.root, i.path, i.source, %(run_id)s
  FROM unnest(%(roots)s::text[], %(paths)s::text[], %(sources)s::text[]) AS i (root, path, source)
 WHERE i.path IS NOT NULL AND i.path <> '';

-- name: outbox_batch --
-- The next pending entries after a given id, locked so that two drains never take the same file.
SELECT id, root, path
  FROM retention_file_outbox
 WHERE NOT refused AND id > %(after)s
 ORDER BY id
 LIMIT %(limit)s
   FOR UPDATE SKIP LOCKED;

-- name: outbox_preview --
SELECT id, root, path
  FROM retention_file_outbox
 WHERE NOT refused AND id > %(after)s
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
