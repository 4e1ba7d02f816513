-- name: prune_jobs_scan_type --
-- The final events of one type older than the type's cutoff (from the shortest age of the
-- statuses it leads to) after the walk's position, oldest first: one branch of prune_jobs_scan.
-- The event type and the cutoff's parameter name are composed in jobs.py (never from raw text).
-- `version` is the event's xmin: the transaction that wrote it.
(SELECT e.id AS event_id, e.at, e.job_id, e.xmin AS version, e.type
   FROM procrastinate_events e
  WHERE e.type = {event_type}::procrastinate_job_event_type
    AND e.at < {cutoff}
    AND (e.at, e.id) > (%(after_at)s, %(after_id)s)
  ORDER BY e.at, e.id
  LIMIT %(limit)s)

-- name: prune_jobs_scan --
-- One batch of the walk: the CTE `scanned`, the next final events of every type the policy ages,
-- merged in (at, id) order (a Merge Append of one index range per type), so that a batch covers
-- one stretch of time and the pages of the jobs finished then are visited by one pass, not one
-- pass per type.
WITH scanned AS (
    SELECT b.* FROM ({branches}) b ORDER BY b.at, b.event_id LIMIT %(limit)s
)

-- name: prune_jobs_eligible --
-- The jobs of the events in `scanned` that may go, read in the statement's snapshot, unlocked:
-- the CTE `eligible`. A job is eligible when its status is one of the statuses this event type
-- leads to, the event is its latest state change (`scheduled` and `abort_requested` events are
-- not state changes: a scheduled event's `at` is when the job was due, possibly after it was
-- cancelled), and the event is older than the age the rules give the job. `version` (the row
-- version's xmin) and `row` (its ctid) let a delete take exactly the row version these
-- conditions were checked on. Each job is read by a primary-key probe whatever the planner
-- estimates (the lateral subquery with OFFSET 0 is not flattened into a join: a hash join over a
-- seq scan of all jobs, which it picks for the walks that lead to several statuses, costs about
-- a second a batch on a million jobs), and `eligible` is materialized, in the dry run's select
-- as in the deletes. `leads_to` (event types and statuses) and `old_enough` (the age, and a
-- rule's keep_last / max_count read from `bounds`, jobs_count.sql) are composed in jobs.py;
-- statuses and types stay enums (compared by their OIDs, never turned into text per row).
eligible AS MATERIALIZED (
    SELECT j.id, j.row, j.version, s.event_id, s.at, j.status, j.queue_name, j.task_name
      FROM scanned s
     CROSS JOIN LATERAL (
           SELECT j.id, j.ctid AS row, j.xmin AS version, j.status,
                  j.queue_name, j.task_name
             FROM procrastinate_jobs j
            WHERE j.id = s.job_id
           OFFSET 0) j
     WHERE {leads_to}
       AND {old_enough}
       AND {no_later_change}
       AND NOT {held}
)

-- name: prune_jobs_no_later_change --
-- The condition that the event `s` is its job's latest state change (`scheduled` and
-- `abort_requested` events are not state changes), read in the statement's snapshot: one text
-- for the dry run's `eligible` and the real run's delete.
NOT EXISTS (
    SELECT 1 FROM procrastinate_events later
     WHERE later.job_id = s.job_id
       AND later.type NOT IN ('scheduled', 'abort_requested')
       AND (later.at, later.id) > (s.at, s.event_id))

-- name: prune_jobs_select --
-- The walk's batch as the engine's rows (see engine.batches.Segment), nothing locked: what a dry
-- run would delete.
{scan}, {eligible}
SELECT s.at, s.event_id, el.id, el.status, el.queue_name AS queue, el.task_name AS task
  FROM scanned s
  LEFT JOIN eligible el ON el.event_id = s.event_id
 ORDER BY s.at, s.event_id;

-- name: prune_jobs_delete --
-- The batch's eligible jobs deleted, as the CTE `gone`: each job of the events scanned is reached
-- through its primary key, and goes when its status is one its event's type leads to, its event
-- is older than its age, and that event is its latest state change, known one of two ways:
--
-- - its row version was written by the transaction that wrote the event (the same xmin:
--   Procrastinate's trigger inserts the event in the transaction that changes the status): any
--   later state change would have been written with a new row version, or in that same
--   transaction, with the same `at` (now()) and the status the row holds, which is what the
--   conditions read. No need to read its events. (xmin 2, frozen before PostgreSQL 9.4, says
--   nothing about the transaction and never counts.)
-- - otherwise (a job rewritten since it finished, e.g. by the `ON DELETE SET NULL` of its
--   worker's row), its events hold no later state change.
--
-- Both are what the dry run's `eligible` selects (a job that made two final transitions in one
-- transaction may go by the earlier event: with the same `at` and its own status, the same
-- decision). A row updated after the statement's snapshot is rechecked by the delete
-- (EvalPlanQual) on its newest version, with the snapshot's view of the events: a job retried
-- and finished again meanwhile would pass the probe (its new events are invisible to the
-- snapshot), so a row version must also have been written by a transaction the snapshot sees
-- (its xmin made a full transaction id from the snapshot's epoch: a recent xmin, the only kind
-- that can fail the test, is always within one epoch of the snapshot's xmax). The newest
-- version of such a job fails both ways and stays for the next run (tests/test_jobs_race.py).
--
-- A row another transaction holds locked is waited for, up to the batch's lock_timeout: the
-- engine then retries the batch with prune_jobs_delete_skip_locked.
snapshot AS MATERIALIZED (
    SELECT c.snapshot, c.xmax - (c.xmax & 4294967295) AS epoch, c.xmax & 4294967295 AS low
      FROM (SELECT s.snapshot, pg_snapshot_xmax(s.snapshot)::text::bigint AS xmax
              FROM (SELECT pg_current_snapshot() AS snapshot) s) c
), gone AS (
    DELETE FROM procrastinate_jobs j
     USING scanned s, snapshot
     WHERE j.id = s.job_id
       AND {leads_to}
       AND {old_enough}
       AND NOT {held}
       AND ((j.xmin = s.version AND j.xmin <> '2'::xid)
            OR ({no_later_change}
                AND pg_visible_in_snapshot(
                    (snapshot.epoch + j.xmin::text::bigint
                     - CASE WHEN j.xmin::text::bigint > snapshot.low THEN 4294967296 ELSE 0 END
                    )::text::xid8,
                    snapshot.snapshot)))
    RETURNING j.id, s.at, s.event_id, j.status, j.queue_name, j.task_name{archived}
)

-- name: prune_jobs_delete_skip_locked --
-- As prune_jobs_delete, for a batch that met a locked row: every job goes through `eligible`,
-- the rows are locked first, and rows another transaction has locked are skipped, never waited
-- for (left for the next run). FOR UPDATE re-evaluates `locked`'s conditions on the newest
-- version of a row updated since the snapshot, where the xmin is not `version`.
{eligible}, locked AS (
    SELECT j.ctid AS row, j.id, el.at, el.event_id, el.status, el.queue_name, el.task_name
      FROM eligible el
      JOIN procrastinate_jobs j ON j.ctid = el.row
     WHERE j.xmin = el.version
       AND j.id = el.id
       AND j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
       AND NOT {held}
       FOR UPDATE OF j SKIP LOCKED
), gone AS (
    DELETE FROM procrastinate_jobs j USING locked l WHERE j.ctid = l.row
    RETURNING j.id, l.at, l.event_id, l.status, l.queue_name, l.task_name{archived}
)

-- name: prune_jobs_fused --
-- The walk's batch selected and deleted in one statement (by prune_jobs_delete or its
-- skip-locked twin); the events go through the ON DELETE CASCADE of Procrastinate's schema (the
-- engine counts them with deleted_job_events). What comes back is the engine's grouped tally,
-- not a row per job: the last event scanned (the keyset position) and how many were scanned,
-- then per status, queue and task of the deleted jobs: how many and the oldest finish; and the
-- first ids deleted, in walk order (as many as the run still lacks: once it has them, the sort is
-- skipped). With nothing deleted, one
-- row whose groups are NULL; with nothing scanned, no row. With archiving, the delete also
-- deletes the jobs' events (prune_jobs_archive_events) and each row carries the archive's lines
-- (prune_jobs_archive).
{scan}, {delete}, tally AS (
    SELECT g.status, g.queue_name, g.task_name, count(*) AS deleted, min(g.at) AS oldest
      FROM gone g
     GROUP BY g.status, g.queue_name, g.task_name
), edge AS MATERIALIZED (
    SELECT e.at, (SELECT max(s.event_id) FROM scanned s WHERE s.at = e.at) AS event_id, e.scanned
      FROM (SELECT max(s.at) AS at, count(*) AS scanned FROM scanned s) e
     WHERE e.scanned > 0
)
SELECT e.at, e.event_id, e.scanned,
       t.status, t.queue_name AS queue, t.task_name AS task,
       coalesce(t.deleted, 0) AS deleted, t.oldest,
       (SELECT array_agg(f.id)
          FROM (SELECT g.id FROM gone g WHERE %(samples)s > 0
                 ORDER BY g.at, g.event_id LIMIT %(samples)s) f) AS samples
       {archive}
  FROM edge e
  LEFT JOIN tally t ON true;

-- name: prune_jobs_archive_line --
-- With archiving: what prune_jobs_delete and its skip-locked twin also return of each job
-- deleted, its archive line (see retention.archive.writer). The line is built by concatenation
-- around row_to_json, which costs half as much as json_build_object over to_jsonb and gives
-- the same JSON values (left unformatted: its braces are text, not placeholders).
, '{"table": ["procrastinate_jobs"], "row": ' || row_to_json(j)::text || '}' AS line

-- name: prune_jobs_archive_events --
-- With archiving: the events of the jobs `gone` deletes, deleted in the same statement so that
-- RETURNING gives them (the cascade, which runs after the statement, then finds none left); by
-- `= ANY(ARRAY(...))`, which the planner serves with the index on job_id. Each returns its
-- archive line, as prune_jobs_archive_line (left unformatted).
-- Procrastinate writes an event only with a change of its job's row, which the delete waits
-- for or skips, so no event reaches the cascade unseen.
, gone_events AS (
    DELETE FROM procrastinate_events e WHERE e.job_id = ANY(ARRAY(SELECT g.id FROM gone g))
    RETURNING e.id, '{"table": ["procrastinate_events"], "row": ' || row_to_json(e)::text || '}'
              AS line
)

-- name: prune_jobs_archive --
-- With archiving: the batch's archive lines, the jobs' then their events' (parents before
-- children, with no sort of the lines), on the first row of prune_jobs_fused only (it returns a
-- row per status, queue and task: a copy of the lines on each row cost more than the delete
-- itself), and their number on every row.
, CASE WHEN row_number() OVER () = 1 THEN
       concat_ws(E'\n', (SELECT string_agg(g.line, E'\n') FROM gone g),
                        (SELECT string_agg(ev.line, E'\n') FROM gone_events ev))
  END AS archive,
  (SELECT count(*) FROM gone) + (SELECT count(*) FROM gone_events) AS archive_rows

-- name: deleted_job_events --
-- Events this transaction has deleted so far (the cascades of its job deletes included), read
-- before and after a batch's delete: PostgreSQL's per-transaction statistics counter, exact when
-- `track_counts` is on (its default; jobs.py checks it).
SELECT pg_stat_get_xact_tuples_deleted('procrastinate_events'::regclass);

-- name: eligible_jobs --
-- What the prune walk would delete now through the events of one type, counted per status: the
-- same conditions, no batches.
SELECT j.status::text, count(*), min(e.at)
  FROM procrastinate_events e
  JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE e.type = {event_type}::procrastinate_job_event_type
   AND e.at < %(cutoff)s
   AND j.status::text IN ({statuses})
   AND e.at < %(now)s - {age}
   AND NOT EXISTS (
       SELECT 1 FROM procrastinate_events later
        WHERE later.job_id = e.job_id
          AND later.type NOT IN ('scheduled', 'abort_requested')
          AND (later.at, later.id) > (e.at, e.id))
   AND {hold}
 GROUP BY 1;

-- name: oldest_final_event --
-- Where the walk starts for one event type (for its progress). Also the walk's settle pass,
-- once per type, after a real run deleted jobs: this scan goes through the index entries of the
-- events just deleted up to the first event left, and marks them dead, so that the next run does
-- not visit them one by one.
SELECT min(at) FROM procrastinate_events
 WHERE type = {event_type}::procrastinate_job_event_type AND at < {cutoff}

-- name: purge_jobs_select --
-- One batch of an operator's purge, by job id. Only final statuses can ever match. A job finished
-- before the given time when its latest state change is a final event older than that.
SELECT j.id AS job_id, j.id, j.status::text AS status, j.queue_name AS queue,
       j.task_name AS task,
       (SELECT max(e.at) FROM procrastinate_events e
         WHERE e.job_id = j.id AND e.type IN ('succeeded', 'failed', 'cancelled', 'aborted'))
       AS finished
  FROM procrastinate_jobs j
 WHERE j.id > %(after_id)s
   AND j.status = ANY(%(statuses)s::procrastinate_job_status[])
   AND j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
   AND (%(ids)s::bigint[] IS NULL OR j.id = ANY(%(ids)s::bigint[]))
   AND (%(queue_re)s::text IS NULL OR j.queue_name ~ %(queue_re)s::text)
   AND (%(task_re)s::text IS NULL OR j.task_name ~ %(task_re)s::text)
   AND {hold}
   AND (%(before)s::timestamptz IS NULL OR EXISTS (
        SELECT 1
          FROM (SELECT e.type, e.at FROM procrastinate_events e
                 WHERE e.job_id = j.id AND e.type NOT IN ('scheduled', 'abort_requested')
                 ORDER BY e.at DESC, e.id DESC
                 LIMIT 1) latest
         WHERE latest.type IN ('succeeded', 'failed', 'cancelled', 'aborted')
           AND latest.at < %(before)s))
 ORDER BY j.id
 LIMIT %(limit)s
 {lock};

-- name: delete_jobs_doomed --
-- The jobs delete_jobs and delete_jobs_archived delete (a fragment, formatted into both). Final
-- statuses only, whatever the caller passed; with a time given, only jobs whose state has not
-- changed since then (the rows are locked by the select, and this statement sees every change
-- committed before the lock was taken).
doomed AS (
    SELECT j.id FROM procrastinate_jobs j
     WHERE j.id = ANY(%(ids)s::bigint[])
       AND j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
       AND NOT {held}
       AND (%(since)s::timestamptz IS NULL OR NOT EXISTS (
           SELECT 1 FROM procrastinate_events e
            WHERE e.job_id = j.id
              AND e.type NOT IN ('scheduled', 'abort_requested')
              AND e.at >= %(since)s::timestamptz))
)

-- name: delete_jobs --
-- Jobs and their events, in one statement (which jobs: delete_jobs_doomed).
WITH {doomed}, events AS (
    DELETE FROM procrastinate_events e USING doomed WHERE e.job_id = doomed.id RETURNING 1
), jobs AS (
    DELETE FROM procrastinate_jobs j USING doomed WHERE j.id = doomed.id RETURNING 1
)
SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM events);

-- name: delete_jobs_archived --
-- delete_jobs with archiving (a purge when [jobs] archive = true): the same jobs, their events
-- deleted in the same statement, and the archive lines of both (jobs first), as the prune's
-- fused statement returns them (prune_jobs_archive_line, prune_jobs_archive_events).
WITH {doomed}, events AS (
    DELETE FROM procrastinate_events e USING doomed WHERE e.job_id = doomed.id
    RETURNING '{{"table": ["procrastinate_events"], "row": ' || row_to_json(e)::text || '}}' AS line
), jobs AS (
    DELETE FROM procrastinate_jobs j USING doomed WHERE j.id = doomed.id
    RETURNING '{{"table": ["procrastinate_jobs"], "row": ' || row_to_json(j)::text || '}}' AS line
)
SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM events),
       concat_ws(E'\n', (SELECT string_agg(line, E'\n') FROM jobs),
                        (SELECT string_agg(line, E'\n') FROM events));

-- name: count_job_events --
SELECT count(*) FROM procrastinate_events WHERE job_id = ANY(%(ids)s::bigint[]);

-- name: unfinished_jobs_among --
SELECT id, status::text FROM procrastinate_jobs
 WHERE id = ANY(%(ids)s::bigint[]) AND status NOT IN ('succeeded', 'failed', 'cancelled', 'aborted')
 ORDER BY id;

-- name: existing_job_ids --
SELECT id FROM procrastinate_jobs WHERE id = ANY(%(ids)s::bigint[]);

-- name: any_queue_matches --
SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE queue_name ~ %(pattern)s::text);

-- name: any_task_matches --
SELECT EXISTS (SELECT 1 FROM procrastinate_jobs WHERE task_name ~ %(pattern)s::text);

-- name: held_jobs --
-- How many jobs the prune would delete now but for a legal hold: the jobs a hold names
-- (`hold`, over `j`) whose latest state change is a final event that leads to their status
-- (`pairs`) and is older than the age the rules give them (`age`). What eligible_jobs counts
-- with the hold condition, in one statement for every event type: one pass over the jobs the
-- holds name (by id, or the whole table when a hold names a glob), not one per type.
SELECT count(*)
  FROM procrastinate_jobs j
 CROSS JOIN LATERAL (
       SELECT e.type, e.at FROM procrastinate_events e
        WHERE e.job_id = j.id AND e.type NOT IN ('scheduled', 'abort_requested')
        ORDER BY e.at DESC, e.id DESC
        LIMIT 1) latest
 WHERE j.status IN ('succeeded', 'failed', 'cancelled', 'aborted')
   AND {hold}
   AND (latest.type, j.status) IN ({pairs})
   AND latest.at < %(now)s - {age};
