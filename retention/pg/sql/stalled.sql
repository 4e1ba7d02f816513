-- name: retention_jobs_unfinished --
-- The retention jobs waiting or running, oldest first: each with its worker's heartbeat age
-- (NULL when the job has no worker or its worker is gone) and the job holding its lock, if any.
SELECT job.id, job.task_name, job.status::text AS status, job.queue_name, job.attempts,
       job.scheduled_at, job.lock, job.worker_id,
       EXTRACT(epoch FROM now() - worker.last_heartbeat)::float8 AS heartbeat_age,
       (SELECT holder.id FROM procrastinate_jobs holder
         WHERE holder.lock = job.lock AND holder.status = 'doing' AND holder.id <> job.id
         ORDER BY holder.id LIMIT 1) AS held_by,
       job.scheduled_at > now() AS later
  FROM procrastinate_jobs job
  LEFT JOIN procrastinate_workers worker ON worker.id = job.worker_id
 WHERE job.status IN ('todo', 'doing')
   AND job.task_name = ANY(%(tasks)s)
 ORDER BY job.id
