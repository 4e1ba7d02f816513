-- name: health_facts --
-- What the health rule reads, on the database's clock: when retention was installed (its first
-- migration), the last finished run and the last run that succeeded (kind run, no dry runs).
SELECT now() AS checked_at,
       (SELECT min(applied_at) FROM retention_migrations) AS installed_at,
       last.id AS last_id, last.status AS last_status, last.finished_at AS last_finished_at,
       last.error AS last_error,
       ok.id AS ok_id, ok.started_at AS ok_started_at, ok.finished_at AS ok_finished_at
  FROM (SELECT) AS here
  LEFT JOIN LATERAL (
        SELECT id, status, finished_at, error FROM retention_runs
         WHERE kind = 'run' AND NOT dry_run AND status <> 'running'
         ORDER BY id DESC LIMIT 1) AS last ON true
  LEFT JOIN LATERAL (
        SELECT id, started_at, finished_at FROM retention_runs
         WHERE kind = 'run' AND NOT dry_run AND status = 'succeeded'
         ORDER BY id DESC LIMIT 1) AS ok ON true;
