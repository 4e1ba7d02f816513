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

