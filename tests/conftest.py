"""Fixtures: a real PostgreSQL, a template database holding Procrastinate's schema and our
migrations, and a fresh database per test created from it.

The server: libpq's PG* variables when any is set; else libpq's defaults when a server answers
there; else the embedded server (in a temporary RETENTION_HOME).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo as libpq
from psycopg import sql

from retention.config import settings as settings_mod
from retention.embedded import server as embedded
from retention.engine import batches
from retention.pg import database as pg_database
from retention.pg import migrate

ROOT = Path(__file__).resolve().parent.parent
PG_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")
FINAL = settings_mod.FINAL_STATUSES


def _answers(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def server_conninfo() -> Iterator[str]:
    """Conninfo of a maintenance database on the test server."""
    if any(os.environ.get(name) for name in PG_VARIABLES) or _answers(""):
        with psycopg.connect("") as probe:
            info = probe.info
            params = {"host": info.host, "port": str(info.port), "user": info.user}
        params["dbname"] = os.environ.get("PGDATABASE") or "postgres"
        yield libpq.make_conninfo(**params)
        return
    home = Path(tempfile.mkdtemp(prefix="rt-"))
    try:
        yield embedded.start(home)
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)


def dsn_for(server: str, dbname: str) -> str:
    params = libpq.conninfo_to_dict(server)
    params["dbname"] = dbname
    return libpq.make_conninfo(**params)


@pytest.fixture(scope="session")
def template_db(server_conninfo: str) -> Iterator[str]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"retention_tpl_{worker}_{os.getpid()}"
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(dsn_for(server_conninfo, name), autocommit=True) as conn:
        migrate.apply(conn)
    yield name
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database(server_conninfo: str, template_db: str) -> Iterator[str]:
    """A fresh database from the template; yields its conninfo."""
    name = f"retention_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield dsn_for(server_conninfo, name)
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def empty_database(server_conninfo: str) -> Iterator[str]:
    """A fresh database with nothing in it (no Procrastinate schema, no migrations)."""
    name = f"retention_e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield dsn_for(server_conninfo, name)
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database, autocommit=True) as connection:
        yield connection


@pytest.fixture
def location(database: str) -> pg_database.Location:
    return pg_database.Location(conninfo=database, source="DATABASE_URL")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray RETENTION_* / DATABASE_URL from the developer's shell, no ./retention.toml."""
    for name in list(os.environ):
        if name.startswith("RETENTION_") or name in ("DATABASE_URL", "LOG_RETENTION_DAYS"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def make_settings(database: str, **overrides: Any) -> settings_mod.Settings:
    return settings_mod.Settings(database_url=database, **overrides)


def jobs_policy(database: str, **ages: str) -> settings_mod.JobsPolicy:
    """The `[jobs]` policy with these ages (e.g. succeeded="30d")."""
    return make_settings(database, jobs=ages).jobs


def prune_limits(
    *, batch_size: int, max_batch_seconds: float, lock_timeout: float
) -> batches.Limits:
    """Engine limits for a walk run directly by a test (`lock_timeout` in seconds), with a
    minute of time budget from now."""
    return batches.Limits(
        batch_size=batch_size,
        max_batch_seconds=max_batch_seconds,
        lock_timeout=dt.timedelta(seconds=lock_timeout),
        deadline=time.monotonic() + 60,
    )


def seed_job(
    conn: psycopg.Connection,
    *,
    status: str,
    finished_ago: dt.timedelta | None,
    queue: str = "default",
    task: str = "app.task",
    with_events: bool = True,
    rewritten: bool = False,
) -> int:
    """Insert a job with the events Procrastinate would have written: deferred, started, then its
    final event `finished_ago` before now (no final event for todo/doing). As with Procrastinate,
    the job's row version and its final event are written by one transaction (which also dates
    the events); `rewritten`: the row is updated again afterwards, with no state change (as the
    `ON DELETE SET NULL` of its worker's row does), so the two no longer share a transaction."""
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status) "
        "VALUES (%s, %s, 'todo') RETURNING id",
        (queue, task),
    ).fetchone()
    assert row is not None
    job_id = row[0]
    with conn.transaction():
        if status != "todo":
            conn.execute(
                "UPDATE procrastinate_jobs SET status = %s WHERE id = %s",
                (
                    "doing" if status in ("doing", "succeeded", "failed", "aborted") else status,
                    job_id,
                ),
            )
            if status in ("succeeded", "failed", "aborted"):
                if status == "aborted":
                    conn.execute(
                        "UPDATE procrastinate_jobs SET abort_requested = true WHERE id = %s",
                        (job_id,),
                    )
                conn.execute(
                    "UPDATE procrastinate_jobs SET status = %s WHERE id = %s", (status, job_id)
                )
        if finished_ago is not None:
            conn.execute(
                "UPDATE procrastinate_events SET at = now() - %s - interval '1 minute' "
                "WHERE job_id = %s",
                (finished_ago, job_id),
            )
            conn.execute(
                "UPDATE procrastinate_events SET at = now() - %s "
                "WHERE job_id = %s AND type::text = %s",
                (finished_ago, job_id, status),
            )
    if not with_events:
        conn.execute("DELETE FROM procrastinate_events WHERE job_id = %s", (job_id,))
    if rewritten:
        conn.execute("UPDATE procrastinate_jobs SET priority = priority WHERE id = %s", (job_id,))
    return job_id


def shares_final_transaction(conn: psycopg.Connection, job_id: int) -> bool:
    """Whether the job's row version was written by the transaction of its latest final event."""
    row = conn.execute(
        "SELECT j.xmin = e.xmin FROM procrastinate_jobs j "
        "JOIN LATERAL (SELECT xmin FROM procrastinate_events "
        "              WHERE job_id = j.id AND type IN ('succeeded', 'failed', 'cancelled', "
        "                                               'aborted') "
        "              ORDER BY at DESC, id DESC LIMIT 1) e ON true WHERE j.id = %s",
        (job_id,),
    ).fetchone()
    return bool(row and row[0])


def job_ids(conn: psycopg.Connection) -> set[int]:
    return {row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs")}


def cli_env(database: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: none of the shell's RETENTION_*, PG* or DATABASE_URL,
    then DATABASE_URL=database (when given) and `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("RETENTION") or k.startswith("PG") or k == "DATABASE_URL")
    }
    if database is not None:
        env["DATABASE_URL"] = database
    env.update(extra)
    return env


def run_cli(
    *args: str,
    database: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The real `retention` command in a subprocess."""
    full_env = cli_env(database)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "retention", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        input=input,
        timeout=timeout,
    )


def wait_for_killed_sessions(conn: psycopg.Connection, timeout: float = 30) -> None:
    """After a client is SIGKILLed, its server session may still commit the statement in flight:
    wait until no `retention` session but ours is left on this database."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = 'retention'"
        ).fetchone()
        if row == (0,):
            return
        time.sleep(0.02)
    raise AssertionError("a killed run's session is still alive")
