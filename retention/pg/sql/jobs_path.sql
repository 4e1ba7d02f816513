-- name: procrastinate_catalog --
-- What the set-based jobs path (retention.jobs.paths) reproduces by hand, read from the catalog
-- as one line of text per item: the three tables a batch writes (and their kind), every trigger
-- on them that is not a foreign key's own (its name, whether it is enabled, and its definition),
-- the body of each such trigger's function (an md5 of its text, white space collapsed), every
-- foreign key from or to them, their rules, and any table inheriting from them or they from it.
-- Schema names are left out (Procrastinate may live in any schema on the search path). The
-- lines are compared, as a set, with what the installed Procrastinate version defines
-- (retention/jobs/schemas.py).
WITH t AS (
    SELECT c.oid, c.relname, c.relkind, n.nspname
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid IN (to_regclass('procrastinate_jobs'), to_regclass('procrastinate_events'),
                     to_regclass('procrastinate_periodic_defers'))
)
SELECT 'table ' || t.relname || ' ' || t.relkind::text AS line FROM t
UNION ALL
SELECT 'trigger ' || t.relname || ' ' || tg.tgname || ' ' || tg.tgenabled::text || ' '
       || replace(pg_get_triggerdef(tg.oid), quote_ident(t.nspname) || '.', '')
  FROM pg_trigger tg JOIN t ON t.oid = tg.tgrelid
 WHERE NOT tg.tgisinternal
UNION ALL
SELECT 'function ' || p.proname || ' ' || md5(btrim(regexp_replace(p.prosrc, '\s+', ' ', 'g')))
  FROM pg_trigger tg JOIN t ON t.oid = tg.tgrelid JOIN pg_proc p ON p.oid = tg.tgfoid
 WHERE NOT tg.tgisinternal
UNION ALL
SELECT 'foreign key ' || (SELECT c.relname FROM pg_class c WHERE c.oid = con.conrelid) || ' '
       || replace(pg_get_constraintdef(con.oid), quote_ident(n.nspname) || '.', '')
  FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
 WHERE con.contype = 'f'
   AND (con.conrelid IN (SELECT oid FROM t) OR con.confrelid IN (SELECT oid FROM t))
UNION ALL
SELECT 'rule ' || t.relname || ' ' || r.rulename || ' ' || r.ev_enabled::text
  FROM pg_rewrite r JOIN t ON t.oid = r.ev_class
UNION ALL
SELECT 'inherits ' || (SELECT c.relname FROM pg_class c WHERE c.oid = i.inhrelid) || ' '
       || (SELECT c.relname FROM pg_class c WHERE c.oid = i.inhparent)
  FROM pg_inherits i
 WHERE i.inhrelid IN (SELECT oid FROM t) OR i.inhparent IN (SELECT oid FROM t)

-- name: procrastinate_catalog_digest --
-- The md5 of procrastinate_catalog's lines, sorted byte-wise and joined by newlines: what each
-- set-based batch checks, inside its transaction and after its writes, against the digest the
-- run chose its path by (a trigger, rule or foreign key added since needs a lock the batch holds
-- until it commits, so it is either seen here or added after the batch).
SELECT md5(string_agg(c.line, E'\n' ORDER BY c.line COLLATE "C")) FROM ({catalog}) c

-- name: may_set_replication_role --
-- Whether this session may SET session_replication_role: a superuser, or (PostgreSQL 15 and
-- later) a role granted SET ON PARAMETER session_replication_role. `granted` is
-- has_parameter_privilege(...) on 15 and later, false before (composed in paths.py).
SELECT r.rolsuper OR {granted}
  FROM pg_roles r WHERE r.rolname = current_user

-- name: set_based_unlink --
-- The set-based path's second statement in a batch (retention.jobs.paths), run with triggers
-- and foreign-key actions off for the transaction: what Procrastinate's BEFORE DELETE trigger
-- (procrastinate_unlink_periodic_defers_v1) and the events' ON DELETE CASCADE do row by row,
-- for the jobs the batch's first statement deleted (`ids`), in bulk. A statement of its own,
-- with its own snapshot taken after the first one returned: an event (or periodic defer) for
-- one of these jobs inserted by a transaction that held its key-share lock on the job is
-- committed by now (the delete waited for it) and is seen here; one inserted later waits for
-- this transaction's row lock on the job and then fails its foreign-key check, since the job is
-- gone. No event can be left without its job.
WITH unlinked AS (
    UPDATE procrastinate_periodic_defers d SET job_id = NULL
     WHERE d.job_id = ANY(%(ids)s::bigint[])
    RETURNING 1
), events AS (
    DELETE FROM procrastinate_events e WHERE e.job_id = ANY(%(ids)s::bigint[])
    RETURNING {line}
)
SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM unlinked) AS unlinked,
       {lines} AS archive

-- name: set_based_archive_line --
-- With archiving, what set_based_unlink returns of each event it deletes: its archive line, as
-- prune_jobs_archive_events builds it (left unformatted).
'{"table": ["procrastinate_events"], "row": ' || row_to_json(e)::text || '}' AS line

-- name: prune_jobs_gone_ids --
-- On the set-based path: the ids of the jobs the fused statement deleted, on its first row only,
-- for set_based_unlink; as the text of an array, which travels back as it came (a list of
-- Python ints would be parsed, then dumped again element by element, 4 ms for a batch of 5,000).
, CASE WHEN row_number() OVER () = 1 THEN (SELECT array_agg(g.id)::text FROM gone g) END AS gone

-- name: prune_jobs_archive_jobs --
-- prune_jobs_archive on the set-based path: the jobs' lines only, on the first row (their events'
-- lines come from set_based_unlink), and their number on every row.
, CASE WHEN row_number() OVER () = 1 THEN (SELECT string_agg(g.line, E'\n') FROM gone g)
  END AS archive,
  (SELECT count(*) FROM gone) AS archive_rows

-- name: session_replication_role --
-- This session's session_replication_role: every run needs `origin`, in which triggers and
-- foreign-key actions fire (the set-based jobs path turns them off for its batches only).
SELECT current_setting('session_replication_role')

-- name: delete_jobs_set_based --
-- delete_jobs on the set-based path (a purge's batch, triggers and foreign-key actions off for
-- its transaction): the jobs only, their ids as the text of an array for set_based_unlink, which
-- deletes their events with its own snapshot; with archiving, the jobs' lines (the line and
-- lines placeholders, composed in deleter.py).
WITH {doomed}, jobs AS (
    DELETE FROM procrastinate_jobs j USING doomed WHERE j.id = doomed.id RETURNING j.id{line}
)
SELECT (SELECT count(*) FROM jobs), (SELECT array_agg(id)::text FROM jobs), {lines}
