"""A user's Procrastinate app, as the README's "Use it from your Procrastinate app" shows it: its
database is the one of its connector, for the tasks and for `retention --app`; a database not
migrated, or one no connector tells, fails with one line; nothing is guessed or started."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers import (
    ROOT,
    Process,
    code_blocks,
    launcher,
    run_shell,
    seed_job,
    shell_env,
    wait_for,
)
from tests.helpers import ledger_runs as runs

README = (ROOT / "README.md").read_text()
WORKER = "procrastinate --app=myapp.app worker"
MIGRATE = "PYTHONPATH=. retention --app myapp.app migrate"
DEFER = """\
import myapp
with myapp.app.open():
    myapp.retention_tasks.prune_jobs.defer()
"""
# An app whose connector is the only place its database is named.
LITERAL_APP = """\
import procrastinate

import retention

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo={conninfo!r}))
retention_tasks = retention.blueprint()
app.add_tasks_from(retention_tasks, namespace="retention")
"""
# A connector of the user's own that works (it wraps a PsycopgConnector) and does not tell
# which database it uses.
SILENT_APP = """\
import procrastinate
from procrastinate import connector

import retention


class Wrapped(connector.BaseAsyncConnector):
    def __init__(self, inner):
        self.inner = inner

    async def open_async(self, pool=None):
        await self.inner.open_async(pool)

    async def close_async(self):
        await self.inner.close_async()

    async def execute_query_async(self, query, **arguments):
        return await self.inner.execute_query_async(query, **arguments)

    async def execute_query_one_async(self, query, **arguments):
        return await self.inner.execute_query_one_async(query, **arguments)

    async def execute_query_all_async(self, query, **arguments):
        return await self.inner.execute_query_all_async(query, **arguments)

    async def listen_notify(self, on_notification, channels):
        return await self.inner.listen_notify(on_notification, channels)

    def get_sync_connector(self):
        return self.inner.get_sync_connector()


app = procrastinate.App(
    connector=Wrapped(procrastinate.PsycopgConnector(conninfo={conninfo!r}))
)
retention_tasks = retention.blueprint()
app.add_tasks_from(retention_tasks, namespace="retention")
"""


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    yield from launcher(tmp_path)


def readme_myapp() -> str:
    [body] = [
        b.body
        for b in code_blocks(README)
        if b.language == "python" and b.body.startswith("# myapp.py")
    ]
    return body + "\n"


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """A shell with no DATABASE_URL and no PG* variable: only the app names the database."""
    env = shell_env("", RETENTION_HOME=str(home), PYTHONPATH=".", **extra)
    del env["DATABASE_URL"]
    return env


def procrastinate_schema(work: Path, env: dict[str, str]) -> None:
    """The user's app already has Procrastinate's schema: applied by Procrastinate itself."""
    done = run_shell("procrastinate --app=myapp.app schema --apply", env, work)
    assert done.returncode == 0, done.stderr


def job_statuses(conn: psycopg.Connection, task: str) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT status::text FROM procrastinate_jobs WHERE task_name = %s ORDER BY id", (task,)
        )
    ]


def test_the_readme_section_on_a_fresh_database_prunes_the_apps_old_jobs(
    start, empty_database, tmp_path
):
    work = tmp_path / "work"
    work.mkdir()
    (work / "myapp.py").write_text(readme_myapp())
    env = shell_env(empty_database, RETENTION_HOME=str(tmp_path / "home"), PYTHONPATH=".")
    procrastinate_schema(work, env)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        old = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
        older = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=100))
        young = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(hours=1))

        assert MIGRATE in README
        migrated = run_shell(MIGRATE, env, work)
        assert migrated.returncode == 0, migrated.stderr
        deferred = subprocess.run(
            [sys.executable, "-c", DEFER], env=env, cwd=work, capture_output=True, text=True
        )
        assert deferred.returncode == 0, deferred.stderr
        worker = start(WORKER, env, work)
        wait_for(
            lambda: job_statuses(conn, "retention:prune_jobs") == ["succeeded"],
            what="the worker to run retention:prune_jobs",
        )
        assert worker.terminate() == 0, worker.output()
        remaining = {row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs")}
        assert old not in remaining
        assert older not in remaining
        assert young in remaining

        # The same through the CLI on the app.
        again = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
        pruned = run_shell("PYTHONPATH=. retention --app myapp.app run --only jobs", env, work)
        assert pruned.returncode == 0, pruned.stderr
        assert conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE id = %s", (again,)
        ).fetchone() == (0,)
        assert [run["status"] for run in runs(conn)] == ["succeeded", "succeeded"]


def test_retention_app_takes_the_database_from_the_apps_connector(empty_database, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    (work / "myapp.py").write_text(LITERAL_APP.format(conninfo=empty_database))
    env = bare_env(home)
    procrastinate_schema(work, env)

    shown = run_shell("retention --app myapp.app db", env, work)
    assert shown.returncode == 0, shown.stderr
    assert "source: the app myapp.app" in shown.stdout
    dbname = psycopg.conninfo.conninfo_to_dict(empty_database)["dbname"]
    assert f"database: {dbname}" in shown.stdout

    refused = run_shell("retention --app myapp.app status", env, work)
    assert refused.returncode == 2
    assert "run `retention migrate`" in refused.stderr
    assert run_shell("retention --app myapp.app migrate", env, work).returncode == 0
    by_env = run_shell("retention status", {**env, "RETENTION_APP": "myapp.app"}, work)
    assert by_env.returncode == 0, by_env.stderr
    assert not home.exists(), "the embedded server was started"

    for app_path, reason in (
        ("nomodule.app", "cannot import the module 'nomodule'"),
        ("myapp.nothing", "the module 'myapp' has no attribute 'nothing'"),
        ("myapp.retention", "'retention' is a module, not a procrastinate.App"),
        ("myapp", "give the app as MODULE.ATTR"),
    ):
        bad = run_shell(f"retention --app {app_path} db", env, work)
        assert bad.returncode == 2, (app_path, bad.stderr)
        assert reason in bad.stderr
        assert "Traceback" not in bad.stderr


def test_a_task_on_a_database_not_migrated_fails_with_one_line(start, empty_database, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "myapp.py").write_text(LITERAL_APP.format(conninfo=empty_database))
    env = bare_env(tmp_path / "home")
    procrastinate_schema(work, env)
    deferred = subprocess.run(
        [sys.executable, "-c", DEFER], env=env, cwd=work, capture_output=True, text=True
    )
    assert deferred.returncode == 0, deferred.stderr
    worker = start(WORKER, env, work)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        wait_for(
            lambda: job_statuses(conn, "retention:prune_jobs") == ["failed"],
            what="the task to fail",
        )
    assert worker.terminate() == 0, worker.output()
    output = worker.output()
    assert "the database is not migrated" in output
    assert "run `retention migrate` (or `retention --app MODULE.ATTR migrate`" in output
    assert "Traceback" not in output
    assert "UndefinedTable" not in output


def test_a_connector_that_does_not_tell_fails_the_task_with_the_fix(
    start, database, conn, tmp_path
):
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    (work / "myapp.py").write_text(SILENT_APP.format(conninfo=database))
    env = bare_env(home)
    deferred = subprocess.run(
        [sys.executable, "-c", DEFER], env=env, cwd=work, capture_output=True, text=True
    )
    assert deferred.returncode == 0, deferred.stderr
    worker = start(WORKER, env, work)
    wait_for(
        lambda: job_statuses(conn, "retention:prune_jobs") == ["failed"],
        what="the task to fail",
    )
    assert worker.terminate() == 0, worker.output()
    output = worker.output()
    assert "retention cannot tell which database the app uses (its connector is a Wrapped)" in (
        output
    )
    assert 'retention.blueprint(settings, database="postgresql://' in output
    assert "Traceback" not in output
    assert not home.exists(), "the embedded server was started"
    assert runs(conn) == []


def test_a_bad_setting_through_procrastinate_is_a_usage_error(empty_database, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "myapp.py").write_text(LITERAL_APP.format(conninfo=empty_database))
    env = bare_env(tmp_path / "home", RETENTION_BATCH_SIZE="0")
    done = run_shell(WORKER, env, work)
    assert done.returncode == 2, done.stderr
    assert "batch_size" in done.stderr
    assert "Traceback" not in done.stderr
