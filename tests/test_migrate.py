from __future__ import annotations

import threading

import psycopg
import pytest
from conftest import run_cli

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
        assert not again.procrastinate_schema_applied and again.applied == []
        assert migrate.pending(conn) == []


def test_migrate_keeps_an_existing_procrastinate_schema(empty_database):
    from procrastinate import schema

    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute(schema.SchemaManager.get_schema())
        conn.execute("INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('q', 't')")
        report = migrate.apply(conn)
        assert not report.procrastinate_schema_applied
        assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone() == (1,)


def test_two_processes_migrating_at_once_both_succeed(empty_database):
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(empty_database, autocommit=True) as conn:
                migrate.apply(conn)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    with psycopg.connect(empty_database) as conn:
        applied = [row[0] for row in conn.execute("SELECT name FROM retention_migrations")]
    assert sorted(applied) == [m.name for m in migrate.available()]


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


def test_migrate_from_the_cli_and_run_refuses_an_unmigrated_database(empty_database):
    refused = run_cli("run", database=empty_database)
    assert refused.returncode == 2
    assert "retention migrate" in refused.stderr
    done = run_cli("migrate", database=empty_database)
    assert done.returncode == 0, done.stderr
    assert "applied" in done.stdout
    again = run_cli("migrate", database=empty_database)
    assert again.returncode == 0 and "up to date" in again.stdout
    assert run_cli("run", database=empty_database).returncode == 0


def test_migrations_ship_inside_the_package():
    names = [m.name for m in migrate.available()]
    assert names and names == sorted(names)
    assert names[0].startswith("0001_")


def test_the_wheel_ships_migrations_queries_and_the_demo_config(tmp_path):
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("procrastinate_retention-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for migration in migrate.available():
        assert f"retention/pg/migrations/{migration.name}" in names
    queries = sorted((root / "retention" / "pg" / "sql").glob("*.sql"))
    assert queries
    for path in queries:
        assert f"retention/pg/sql/{path.name}" in names
    assert "retention/demo/demo.toml" in names
    assert "retention/demo/demo.sql" in names


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
