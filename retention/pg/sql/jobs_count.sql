-- name: prune_jobs_count_bounds --
-- With a `keep_last` / `max_count` rule: the CTE `bounds`, appended to the walk's `scanned`.
-- Once per group of the batch (not per job): the distinct groups (the rule that decides the
-- job's age, and its queue and/or task with `per`) of the batch's scanned jobs, and for each the
-- N-th newest finished job of that group as the (at, event_id) of its latest state change. A job
-- strictly older is beyond the newest N; a group of N jobs or fewer has no row. The branches
-- (one prune_jobs_count_group per count rule) is composed in jobs/policy.py. Read in the deleting
-- statement's own snapshot.
, bounds AS MATERIALIZED ({branches})

-- name: prune_jobs_count_group --
-- One count rule's groups in the batch and each group's N-th newest finished job: newest by
-- finish time (the walk's index on the final events, read backwards per type and merged), only
-- jobs whose status is one the rule sets (finished, never todo or doing) and whose age the rule
-- decides, each counted once (by its latest state change). The rule's index, the group's
-- columns, the rule's conditions (on `j`, then on `n`), the types merged and the offset (N - 1)
-- are composed in jobs/policy.py.
SELECT g.rule, g.queue, g.task, b.at, b.event_id
  FROM (SELECT DISTINCT {rule}::int AS rule, {queue}::text AS queue, {task}::text AS task
          FROM scanned s
          JOIN procrastinate_jobs j ON j.id = s.job_id
         WHERE {governed_j}) g
 CROSS JOIN LATERAL (
       SELECT f.at, f.event_id
         FROM ({types}) f
         JOIN procrastinate_jobs n ON n.id = f.job_id
        WHERE {same_group}
          AND {governed_n}
          AND NOT EXISTS (
              SELECT 1 FROM procrastinate_events later
               WHERE later.job_id = f.job_id
                 AND later.type NOT IN ('scheduled', 'abort_requested')
                 AND (later.at, later.id) > (f.at, f.event_id))
        ORDER BY f.at DESC, f.event_id DESC
       OFFSET {offset} LIMIT 1) b

-- name: prune_jobs_count_type --
-- The final events of one type, newest first (a backward scan of the walk's index): one branch
-- of prune_jobs_count_group's merge.
(SELECT e.at, e.id AS event_id, e.job_id FROM procrastinate_events e
  WHERE e.type = {event_type}::procrastinate_job_event_type
  ORDER BY e.at DESC, e.id DESC)

-- name: prune_jobs_count_bound --
-- The bound of the job `j`'s group, from `bounds` (NULL when its group has N jobs or fewer).
(SELECT b.at, b.event_id FROM bounds b WHERE b.rule = {rule} AND {same_group})
