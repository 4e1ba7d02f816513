-- name: sweep_listing_create --
-- Files a sweep found on disk, streamed in with COPY: one row per regular file.
DROP TABLE IF EXISTS {table};
CREATE TEMP TABLE {table} (id bigint NOT NULL, rel bytea NOT NULL, size bigint NOT NULL,
                           mtime double precision NOT NULL);

-- name: sweep_listing_copy --
COPY {table} (id, rel, size, mtime) FROM STDIN (FORMAT BINARY);

-- name: sweep_index --
CREATE INDEX ON {table} (mtime, id);
ANALYZE {table};

-- name: sweep_drop --
DROP TABLE IF EXISTS {table};

-- name: sweep_bounds --
SELECT count(*), coalesce(sum(size), 0), min(mtime), max(mtime) FROM {table};

-- name: sweep_select --
-- One batch of the walk over the listed files, oldest first: the engine's key (mtime, entry),
-- then the path as the id the deleter gets.
SELECT c.mtime, c.id AS entry, c.rel AS id
  FROM {table} c
 WHERE (c.mtime, c.id) > (%(after_at)s::double precision, %(after_id)s::bigint)
 ORDER BY c.mtime, c.id
 LIMIT %(limit)s;

-- name: sweep_already_queued --
-- Files of this batch that the outbox already holds: the files stage retries them.
SELECT path FROM retention_file_outbox
 WHERE root = %(root)s AND path = ANY(%(paths)s::text[]) AND NOT refused;
