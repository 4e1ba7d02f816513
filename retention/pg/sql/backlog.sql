-- name: backlog_table --
-- Rows of one table policy that a run would delete now, and the oldest of them.
SELECT count(*), min(t.{timestamp}) FROM {relation} t WHERE {eligible};

-- name: metrics_last_run --
SELECT id, status, trigger, started_at, finished_at,
       EXTRACT(EPOCH FROM finished_at - started_at)::double precision, summary
  FROM retention_runs
 WHERE kind = 'run' AND NOT dry_run AND status <> 'running'
 ORDER BY id DESC
 LIMIT 1;

-- name: metrics_runs_by_status --
SELECT kind, status, count(*) FROM retention_runs WHERE NOT dry_run GROUP BY kind, status
 ORDER BY kind, status;

-- name: metrics_running --
SELECT id, kind, stage, progress, EXTRACT(EPOCH FROM clock_timestamp() - started_at)::double precision
  FROM retention_runs WHERE status = 'running' ORDER BY id DESC LIMIT 1;
