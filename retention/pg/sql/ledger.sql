-- name: start_run --
INSERT INTO retention_runs (kind, trigger, dry_run, settings, host, pid, backend_pid, backend_start)
SELECT %(kind)s, %(trigger)s, %(dry_run)s, %(settings)s, %(host)s, %(pid)s, a.pid, a.backend_start
  FROM pg_stat_activity a
 WHERE a.pid = pg_backend_pid()
RETURNING id, started_at;

-- name: progress_run --
UPDATE retention_runs
   SET stage = %(stage)s, progress = %(progress)s, summary = %(summary)s,
       heartbeat_at = clock_timestamp()
 WHERE id = %(id)s;

-- name: finish_run --
UPDATE retention_runs
   SET status = %(status)s, stage = NULL, progress = %(progress)s, summary = %(summary)s,
       error = %(error)s, finished_at = clock_timestamp(), heartbeat_at = clock_timestamp()
 WHERE id = %(id)s;

-- name: abandon_dead_runs --
-- A run whose database session is gone was killed: it is abandoned, not running forever.
UPDATE retention_runs r
   SET status = 'abandoned', finished_at = r.heartbeat_at,
       error = 'the process running it stopped without finishing it (killed?)'
 WHERE r.status = 'running'
   AND NOT EXISTS (
       SELECT 1 FROM pg_stat_activity a
        WHERE a.pid = r.backend_pid
          AND (a.backend_start IS NULL OR a.backend_start = r.backend_start))
RETURNING r.id;

-- name: try_run_lock --
SELECT pg_try_advisory_lock(hashtext('procrastinate-retention:run'));

-- name: run_unlock --
SELECT pg_advisory_unlock(hashtext('procrastinate-retention:run'));

-- name: running_runs --
SELECT id, kind, trigger, started_at, stage, progress
  FROM retention_runs WHERE status = 'running' ORDER BY id;

-- name: recent_runs --
SELECT id, kind, trigger, dry_run, status, started_at, finished_at,
       EXTRACT(EPOCH FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8 AS seconds,
       stage, progress, summary, error
  FROM retention_runs
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: get_run --
SELECT id, kind, trigger, dry_run, status, started_at, finished_at,
       EXTRACT(EPOCH FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8 AS seconds,
       stage, progress, summary, error, settings
  FROM retention_runs WHERE id = %(id)s;
