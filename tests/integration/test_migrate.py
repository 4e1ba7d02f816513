"""Migrations against a real PostgreSQL: Procrastinate's schema then ours, in order and once, an
interrupted index build rebuilt, servers older than PostgreSQL 13 refused."""

from __future__ import annotations

import psycopg
import pytest

from retention import errors
from retention.pg import migrate


def _tables(conn: psycopg.Connection) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        )
    }


def test_migrate_applies_procrastinate_schema_then_ours_in_order(empty_database):
    with psycopg.connect(empty_database, autocommit=True) as conn:
        report = migrate.apply(conn)
        assert report.procrastinate_schema_applied
        assert report.applied == [m.name for m in migrate.available()]
        assert {"procrastinate_jobs", "retention_runs", "retention_migrations"} <= _tables(conn)
        index = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = "
            "'retention_events_final_at_idx'::regclass"
        ).fetchone()
        assert index == (True,)
        again = migrate.apply(conn)
        assert not again.procrastinate_schema_applied
        assert again.applied == []
        assert migrate.pending(conn) == []


def test_migrate_keeps_an_existing_procrastinate_schema(empty_database):
    from procrastinate import schema

    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(schema.SchemaManager.get_schema())
        conn.execute("INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('q', 't')")
        report = migrate.apply(conn)
        assert not report.procrastinate_schema_applied
        assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone() == (1,)


def test_an_interrupted_concurrent_index_build_is_rebuilt(empty_database):
    with psycopg.connect(empty_database, autocommit=True) as conn:
        migrate.apply(conn)
        name = "0002_jobs_finished_index.sql"
        conn.execute("DELETE FROM retention_migrations WHERE name = %s", (name,))
        conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = "
            "'retention_events_final_at_idx'::regclass"
        )
        assert migrate.pending(conn) == [name]
        migrate.apply(conn)
        valid = conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = "
            "'retention_events_final_at_idx'::regclass"
        ).fetchone()
        assert valid == (True,)


def test_a_server_older_than_postgresql_13_is_refused(database):
    with psycopg.connect(database) as conn:
        migrate.check_server(conn.info.server_version)  # the test server is recent enough
        assert migrate.pending(conn) == []
    for old, shown in ((120017, "12.17"), (90624, "9.6.24")):
        with pytest.raises(errors.DatabaseError) as caught:
            migrate.check_server(old)
        assert str(caught.value) == (
            f"PostgreSQL 13 or later is required; this server is {shown}: upgrade it, or point "
            "DATABASE_URL at a newer one"
        )
    migrate.check_server(130000)
