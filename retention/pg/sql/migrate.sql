-- name: create_migrations_table --
CREATE TABLE IF NOT EXISTS retention_migrations (
    name text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migration_try_lock --
SELECT pg_try_advisory_lock(hashtext('procrastinate-retention:migrate'));

-- name: migration_unlock --
SELECT pg_advisory_unlock(hashtext('procrastinate-retention:migrate'));

-- name: applied_migrations --
SELECT name FROM retention_migrations ORDER BY name;

-- name: record_migration --
INSERT INTO retention_migrations (name) VALUES (%(name)s);

-- name: procrastinate_schema_present --
SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present;


-- name: migration_lock_holders --
SELECT l.pid FROM pg_locks l
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.objid = hashtext('procrastinate-retention:migrate')::oid
 ORDER BY l.pid;

-- name: database_encoding --
-- Whether the database's encoding is SQL_ASCII (in which psycopg reads text as bytes).
SELECT convert_to(current_database(), 'UTF8') AS name,
       pg_encoding_to_char(d.encoding) = 'SQL_ASCII' AS sql_ascii
  FROM pg_database d WHERE d.datname = current_database();

-- name: open_transactions --
SELECT a.pid, a.application_name, a.state, a.xact_start, left(a.query, 80)
  FROM pg_stat_activity a
 WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
   AND a.xact_start IS NOT NULL
 ORDER BY a.xact_start
 LIMIT 5;
