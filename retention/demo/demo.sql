-- name: demo_schema --
-- The demo application: a home-security recorder. Cameras raise events; each event has object
-- detections with a thumbnail and the original image on disk; the GPU is sampled every 5 minutes;
-- the services log. Every table has an index on the column that ages its rows.
CREATE SCHEMA IF NOT EXISTS retention_demo;

CREATE TABLE IF NOT EXISTS retention_demo.seeded (
    seeded_at timestamptz NOT NULL DEFAULT now(),
    files_dir text NOT NULL,
    files_ready boolean NOT NULL DEFAULT false
);

CREATE TABLE IF NOT EXISTS retention_demo.events (
    id bigserial PRIMARY KEY,
    camera text NOT NULL,
    kind text NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz NOT NULL,
    score real NOT NULL
);
CREATE INDEX IF NOT EXISTS events_started_at_idx ON retention_demo.events (started_at);

CREATE TABLE IF NOT EXISTS retention_demo.detections (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES retention_demo.events (id),
    label text NOT NULL,
    confidence real NOT NULL,
    box integer[] NOT NULL,
    detected_at timestamptz NOT NULL,
    thumbnail_path text NOT NULL,
    image_path text
);
CREATE INDEX IF NOT EXISTS detections_event_id_idx ON retention_demo.detections (event_id);
-- The orphan sweep re-checks a file's row through its path column before each batch.
CREATE INDEX IF NOT EXISTS detections_thumbnail_path_idx ON retention_demo.detections (thumbnail_path);
CREATE INDEX IF NOT EXISTS detections_image_path_idx ON retention_demo.detections (image_path);

CREATE TABLE IF NOT EXISTS retention_demo.gpu_stats (
    id bigserial PRIMARY KEY,
    recorded_at timestamptz NOT NULL,
    gpu smallint NOT NULL,
    utilization real NOT NULL,
    memory_used_mb integer NOT NULL,
    temperature_c real NOT NULL
);
CREATE INDEX IF NOT EXISTS gpu_stats_recorded_at_idx ON retention_demo.gpu_stats (recorded_at);

CREATE TABLE IF NOT EXISTS retention_demo.logs (
    id bigserial PRIMARY KEY,
    logged_at timestamptz NOT NULL,
    level text NOT NULL,
    source text NOT NULL,
    message text NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_logged_at_idx ON retention_demo.logs (logged_at);

-- name: demo_lock --
SELECT pg_advisory_lock(hashtext('retention_demo'));

-- name: demo_unlock --
SELECT pg_advisory_unlock(hashtext('retention_demo'));

-- name: demo_is_seeded --
SELECT EXISTS (SELECT 1 FROM retention_demo.seeded);

-- name: demo_seeded_info --
SELECT seeded_at, files_dir FROM retention_demo.seeded ORDER BY seeded_at DESC LIMIT 1;

-- name: demo_drop --
DROP SCHEMA IF EXISTS retention_demo CASCADE;

-- name: demo_delete_jobs --
-- The demo's own jobs (tasks homesec.*), whatever their status: they are the demo's fake data.
DELETE FROM procrastinate_jobs WHERE task_name LIKE 'homesec.%';

-- name: demo_outbox_exists --
SELECT to_regclass('retention_file_outbox') IS NOT NULL;

-- name: demo_forget_outbox --
-- Pending deletions of earlier demo files: reseeded rows reuse their paths.
DELETE FROM retention_file_outbox WHERE left(root, length(%(prefix)s)) = %(prefix)s;

-- name: demo_foreign_tables --
-- Tables that are neither Procrastinate's, ours nor the demo's: the database is not the demo's own.
SELECT format('%%I.%%I', n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'retention_demo')
   AND n.nspname NOT LIKE 'pg\_%%'
   AND c.relname NOT LIKE 'procrastinate\_%%'
   AND c.relname NOT LIKE 'retention\_%%'
 ORDER BY 1
 LIMIT 5;

-- name: demo_jobs_exist --
SELECT to_regclass('procrastinate_jobs') IS NOT NULL;

-- name: demo_foreign_jobs --
-- Jobs of other applications (neither the demo's tasks nor retention's own queue).
SELECT task_name, count(*)
  FROM procrastinate_jobs
 WHERE task_name NOT LIKE 'homesec.%%' AND queue_name <> %(queue)s
 GROUP BY task_name
 ORDER BY count(*) DESC, task_name
 LIMIT 5;

-- name: demo_seed_jobs --
-- Jobs over 90 days, through Procrastinate's own transitions (a worker's fetch, then its retry,
-- cancel and finish functions; its triggers write the events), then dated: a job's events a few seconds apart, its latest at `last_at`. Finished jobs
-- end at an age of d days + up to 23 h, never in the last hour before a whole day: a rerun within
-- the hour finds no job newly past a cutoff counted in days.
CREATE TEMP TABLE demo_jobs ON COMMIT DROP AS
WITH kinds (k, queue, task) AS (
    VALUES (1, 'cameras', 'homesec.ingest_clip'),
           (2, 'detections', 'homesec.detect_objects'),
           (3, 'thumbnails', 'homesec.make_thumbnail'),
           (4, 'notifications', 'homesec.send_push'),
           (5, 'maintenance', 'homesec.rotate_recordings')
), draws AS (
    SELECT 1 + floor(random() * 5)::int AS k,
           CASE WHEN fate < 0.86 THEN 'succeeded'
                WHEN fate < 0.93 THEN 'failed'
                WHEN fate < 0.97 THEN 'cancelled'
                ELSE 'aborted' END AS status,
           now() - make_interval(days => d, secs => random() * 82800) AS last_at,
           retry
      FROM (SELECT d, random() AS fate, random() AS retry
              FROM generate_series(0, 89) d, generate_series(1, 40)) g
    UNION ALL
    SELECT 1 + floor(random() * 5)::int, 'todo', now() - make_interval(secs => random() * 600), 1
      FROM generate_series(1, 25)
    UNION ALL
    SELECT 1 + floor(random() * 4)::int, 'doing', now() - make_interval(secs => random() * 60), 1
      FROM generate_series(1, 3)
)
SELECT nextval(pg_get_serial_sequence('procrastinate_jobs', 'id')) AS id,
       kinds.queue, kinds.task, draws.status, draws.last_at,
       CASE WHEN draws.status = 'failed' AND draws.retry < 0.7 THEN 1
            WHEN draws.status = 'succeeded' AND draws.retry < 0.04 THEN 1
            ELSE 0 END AS retries,
       jsonb_build_object(
           'camera', (ARRAY['front-door', 'driveway', 'backyard', 'garage'])[1 + floor(random() * 4)::int],
           'clip', 'clip-' || lpad((floor(random() * 1000000))::int::text, 6, '0')) AS args
  FROM draws JOIN kinds USING (k)
 ORDER BY draws.last_at;

INSERT INTO procrastinate_jobs (id, queue_name, task_name, args)
SELECT id, queue, task, args FROM demo_jobs ORDER BY id;

UPDATE procrastinate_jobs j SET status = 'doing'
  FROM demo_jobs d WHERE j.id = d.id AND d.status NOT IN ('todo', 'cancelled');

SELECT procrastinate_retry_job_v2(id, last_at - interval '10 seconds', NULL, NULL, NULL)
  FROM demo_jobs WHERE retries > 0;

UPDATE procrastinate_jobs j SET status = 'doing'
  FROM demo_jobs d WHERE j.id = d.id AND d.retries > 0;

SELECT procrastinate_cancel_job_v1(id, true, false) FROM demo_jobs WHERE status = 'aborted';

SELECT procrastinate_cancel_job_v1(id, false, false) FROM demo_jobs WHERE status = 'cancelled';

SELECT procrastinate_finish_job_v1(id, status::procrastinate_job_status, false)
  FROM demo_jobs WHERE status IN ('succeeded', 'failed', 'aborted');

UPDATE procrastinate_events e SET at = dated.at
  FROM (SELECT e.id,
               d.last_at - (row_number() OVER (PARTITION BY e.job_id ORDER BY e.id DESC) - 1)
                           * interval '3 seconds' AS at
          FROM procrastinate_events e JOIN demo_jobs d ON d.id = e.job_id) dated
 WHERE e.id = dated.id;

-- name: demo_seed_rows --
-- 90 days of application rows. Ages follow the same rule as the jobs' (d days + up to 23 h).
INSERT INTO retention_demo.events (camera, kind, started_at, ended_at, score)
SELECT camera, kind, at, at + make_interval(secs => 5 + random() * 55),
       round((0.35 + random() * 0.65)::numeric, 2)
  FROM (SELECT (ARRAY['front-door', 'driveway', 'backyard', 'garage'])[1 + floor(random() * 4)::int] AS camera,
               (ARRAY['motion', 'person', 'person', 'vehicle', 'animal', 'package'])[1 + floor(random() * 6)::int] AS kind,
               now() - make_interval(days => d, secs => random() * 82800) AS at
          FROM generate_series(0, 89) d, generate_series(1, 8)) s
 ORDER BY at;

INSERT INTO retention_demo.detections
       (id, event_id, label, confidence, box, detected_at, thumbnail_path, image_path)
SELECT id, event_id, label, confidence, box, detected_at,
       folder || '/det-' || id || '.png',
       CASE WHEN has_image THEN folder || '/det-' || id || '.png' END
  FROM (SELECT nextval('retention_demo.detections_id_seq') AS id,
               e.id AS event_id,
               CASE e.kind
                   WHEN 'person' THEN 'person'
                   WHEN 'vehicle' THEN (ARRAY['car', 'car', 'truck', 'bicycle'])[1 + floor(random() * 4)::int]
                   WHEN 'animal' THEN (ARRAY['dog', 'cat', 'fox', 'bird'])[1 + floor(random() * 4)::int]
                   WHEN 'package' THEN 'package'
                   ELSE (ARRAY['person', 'car', 'cat', 'shadow'])[1 + floor(random() * 4)::int]
               END AS label,
               round((0.4 + random() * 0.6)::numeric, 3) AS confidence,
               ARRAY[(random() * 1200)::int, (random() * 600)::int, 40 + (random() * 600)::int,
                     40 + (random() * 400)::int] AS box,
               e.started_at + make_interval(secs => i * 2 + random()) AS detected_at,
               e.camera || '/' || to_char(e.started_at AT TIME ZONE 'UTC', 'YYYY/MM/DD') AS folder,
               random() < 0.95 AS has_image
          FROM retention_demo.events e
         CROSS JOIN LATERAL generate_series(
               1, CASE WHEN e.kind = 'motion' THEN floor(random() * 2)::int
                       ELSE 1 + floor(random() * 3)::int END) i
         ORDER BY e.started_at, i) s;

INSERT INTO retention_demo.gpu_stats (recorded_at, gpu, utilization, memory_used_mb, temperature_c)
SELECT now() - make_interval(secs => s), gpu,
       round((10 + random() * 80)::numeric, 1),
       2048 + (random() * 4096)::int,
       round((45 + random() * 30)::numeric, 1)
  FROM generate_series(0, 90 * 86400 - 300, 300) s, generate_series(0, 1) gpu
 WHERE s % 86400 <= 82800
 ORDER BY 1, 2;

INSERT INTO retention_demo.logs (logged_at, level, source, message)
SELECT at, level, source,
       CASE source
           WHEN 'recorder' THEN format('camera %s: segment written (%s MB)', camera, (random() * 40)::int)
           WHEN 'detector' THEN format('camera %s: inference took %s ms', camera, 20 + (random() * 180)::int)
           WHEN 'notifier' THEN format('push sent for camera %s', camera)
           ELSE format('GET /api/events 200 in %s ms', 2 + (random() * 50)::int)
       END
  FROM (SELECT now() - make_interval(days => d, secs => random() * 82800) AS at,
               CASE WHEN r < 0.9 THEN 'info' WHEN r < 0.98 THEN 'warning' ELSE 'error' END AS level,
               (ARRAY['recorder', 'detector', 'notifier', 'web'])[1 + floor(random() * 4)::int] AS source,
               (ARRAY['front-door', 'driveway', 'backyard', 'garage'])[1 + floor(random() * 4)::int] AS camera
          FROM (SELECT d, random() AS r FROM generate_series(0, 89) d, generate_series(1, 300)) g) s
 ORDER BY at;

-- name: demo_mark_seeded --
INSERT INTO retention_demo.seeded (files_dir) VALUES (%(files_dir)s);

-- name: demo_files_ready --
-- Whether the files of the rows are on disk, in this files directory.
SELECT coalesce(bool_and(files_ready AND files_dir = %(files_dir)s), true) FROM retention_demo.seeded;

-- name: demo_mark_files_ready --
UPDATE retention_demo.seeded SET files_ready = true, files_dir = %(files_dir)s;

-- name: demo_detection_files --
SELECT id, thumbnail_path, image_path, detected_at FROM retention_demo.detections ORDER BY id;

-- name: demo_inventory --
SELECT 'events', count(*), min(started_at), max(started_at) FROM retention_demo.events
UNION ALL
SELECT 'detections', count(*), min(detected_at), max(detected_at) FROM retention_demo.detections
UNION ALL
SELECT 'gpu_stats', count(*), min(recorded_at), max(recorded_at) FROM retention_demo.gpu_stats
UNION ALL
SELECT 'logs', count(*), min(logged_at), max(logged_at) FROM retention_demo.logs;

-- name: demo_job_statuses --
SELECT j.status::text, count(*), min(last.at)
  FROM procrastinate_jobs j
  LEFT JOIN LATERAL (SELECT max(e.at) AS at FROM procrastinate_events e WHERE e.job_id = j.id) last
    ON true
 WHERE j.task_name LIKE 'homesec.%%'
 GROUP BY 1
 ORDER BY 1;
