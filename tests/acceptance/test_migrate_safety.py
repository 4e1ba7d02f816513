"""`retention migrate` says what is wrong instead of failing obscurely or waiting forever: a
SQL_ASCII database is refused, and every wait (another migrate, the sessions an index built
concurrently waits for) is bounded and named."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from tests.helpers import dsn_for, run_cli


def test_a_sql_ascii_database_is_refused_with_what_to_do(server_conninfo):
    name = f"rt_ascii_{int(time.time() * 1000)}"
    with psycopg.connect(server_conninfo, autocommit=True) as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'SQL_ASCII' TEMPLATE template0 "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    try:
        target = dsn_for(server_conninfo, name)
        done = run_cli("migrate", database=target)
        assert done.returncode == 2, done.stderr
        assert "SQL_ASCII" in done.stderr
        assert "UTF8" in done.stderr
        assert "Traceback" not in done.stderr
        for command in (["status"], ["run", "--dry-run"]):
            shown = run_cli(*command, database=target)
            assert shown.returncode == 2, shown.stderr
            assert "SQL_ASCII" in shown.stderr
        with psycopg.connect(target) as conn:
            row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            assert row is not None
            assert row[0] is None
    finally:
        with psycopg.connect(server_conninfo, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _pending_index(conn: psycopg.Connection) -> None:
    conn.execute("DROP INDEX retention_events_final_at_idx")
    conn.execute("DELETE FROM retention_migrations WHERE name LIKE '0002_%'")


def _index_valid(conn: psycopg.Connection) -> bool | None:
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i"
        " WHERE i.indexrelid = to_regclass('retention_events_final_at_idx')"
    ).fetchone()
    return None if row is None else bool(row[0])


def test_an_index_build_behind_an_open_transaction_stops_in_time_and_names_it(conn, database):
    _pending_index(conn)
    with psycopg.connect(database, application_name="long-report") as holder:
        holder.execute("LOCK TABLE procrastinate_events IN ROW EXCLUSIVE MODE")
        started = time.monotonic()
        done = run_cli("migrate", "--wait", "1s", database=database, timeout=60)
        waited = time.monotonic() - started
        holder.rollback()
    assert done.returncode == 2, done.stderr
    assert "0002_" in done.stderr
    assert "long-report" in done.stderr
    assert "Traceback" not in done.stderr
    assert waited < 50
    again = run_cli("migrate", database=database)
    assert again.returncode == 0, again.stderr
    assert _index_valid(conn) is True


def test_a_migrate_behind_another_one_stops_in_time(database):
    with psycopg.connect(database, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('procrastinate-retention:migrate'))")
        pid = other.info.backend_pid
        done = run_cli("migrate", "--wait", "1s", database=database, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "another retention migrate" in done.stderr
    assert str(pid) in done.stderr
