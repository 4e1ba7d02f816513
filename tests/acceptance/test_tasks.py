"""The blueprint in a user's app, the ready-made app and Procrastinate's CLI, exactly as the README
shows them, against the test database."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from procrastinate import exceptions

from retention.interfaces import tasks
from tests.helpers import (
    RUN_WORKER,
    RUN_WORKER_ONCE,
    Process,
    jobs_by_task,
    launcher,
    run_shell,
    seed_job,
    shell_env,
    wait_for,
    workers,
)
from tests.helpers import ledger_runs as runs

MYAPP = """\
# myapp.py
import os

import procrastinate

import retention

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["DATABASE_URL"]),
    worker_defaults={"delete_jobs": "successful"},
)
retention_tasks = retention.blueprint()
app.add_tasks_from(retention_tasks, namespace="retention")
"""
TEST_TASKS = """

@app.task(name="ok")
def ok():
    return "fine"


@app.task(name="boom")
def boom():
    raise RuntimeError("boom")
"""
MYAPP_WORKER = "procrastinate --app=myapp.app worker"
MYAPP_WORKER_DELETING = "procrastinate --app=myapp.app worker --delete-jobs=always"
DEFER = """procrastinate --app=retention.app defer retention:prune_jobs '{"dry_run": true}'"""
DEFER_IGNORING = (
    "procrastinate --app=retention.app defer --queueing-lock=retention:prune_jobs "
    """--ignore-already-enqueued retention:prune_jobs '{"dry_run": true}'"""
)
# Procrastinate's documentation: arguments as key=value, and a queueing-lock example without
# --app naming a task that does not exist.
DOCUMENTED_KEY_VALUE = "procrastinate --app=retention.app defer retention:prune_jobs dry_run=true"
DOCUMENTED_QUEUEING_LOCK = (
    "procrastinate defer --queueing-lock=remove_old_jobs --ignore-already-enqueued "
    "procrastinate_builtin_tasks.remove_old_jobs '{\"max_hours\": 72}'"
)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    yield from launcher(tmp_path)


def write_myapp(where: Path, extra: str = "") -> Path:
    path = where / "myapp.py"
    path.write_text(MYAPP + extra)
    return path


def load_module(path: Path) -> ModuleType:
    """Import a user's module under a name of its own (each test gets a fresh one)."""
    spec = importlib.util.spec_from_file_location(f"myapp_{id(path)}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def job_row(conn: psycopg.Connection, job_id: int) -> tuple[str, str, str, str | None, dict]:
    row = conn.execute(
        "SELECT status::text, queue_name, lock, queueing_lock, args FROM procrastinate_jobs "
        "WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return row


def unfinished(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    ).fetchone()[0]


def test_readme_defer_commands_and_the_queueing_lock(database, conn, tmp_path):
    env = shell_env(database)
    first = run_shell(DEFER, env, tmp_path)
    assert first.returncode == 0, first.stderr
    [(job_id, status, args)] = jobs_by_task(conn)["retention:prune_jobs"]
    assert (status, args) == ("todo", {"dry_run": True})
    assert job_row(conn, job_id)[1:4] == (
        "retention",
        tasks.EXECUTION_LOCK,
        "retention:prune_jobs",
    )
    again = run_shell(DEFER, env, tmp_path)
    assert again.returncode == 1
    assert "already a job in the queue with the queueing lock retention:prune_jobs" in again.stderr
    ignored = run_shell(DEFER_IGNORING, env, tmp_path)
    assert ignored.returncode == 0, ignored.stderr
    assert "(ignored)" in ignored.stderr
    assert [job for job, _, _ in jobs_by_task(conn)["retention:prune_jobs"]] == [job_id]

    done = run_shell(RUN_WORKER_ONCE, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert job_row(conn, job_id)[0] == "succeeded"
    [run] = runs(conn)
    assert (run["kind"], run["trigger"], run["dry_run"], run["status"]) == (
        "run",
        "deferred",
        True,
        "succeeded",
    )


def test_procrastinate_documented_forms_fail_as_the_readme_says(database, conn, tmp_path):
    env = shell_env(database)
    key_value = run_shell(DOCUMENTED_KEY_VALUE, env, tmp_path)
    assert key_value.returncode == 1
    assert "Incorrect JSON_ARGS value" in key_value.stderr
    documented = run_shell(DOCUMENTED_QUEUEING_LOCK, env, tmp_path)
    assert documented.returncode == 1
    assert "Task cannot be imported" in documented.stderr
    assert jobs_by_task(conn) == {}


def test_bad_settings_exit_2_before_anything_runs(database, conn, tmp_path):
    env = shell_env(database, RETENTION_SCHEDULE="every night")
    for command in (RUN_WORKER, "procrastinate --app=retention.app worker", DEFER):
        done = run_shell(command, env, tmp_path)
        assert done.returncode == 2, (command, done.stderr)
        assert "schedule" in done.stderr
        assert "'every night' is not a valid cron" in done.stderr
        assert "Traceback" not in done.stderr
    assert workers(conn) == 0
    assert jobs_by_task(conn) == {}


def test_defer_from_application_code_async_and_sync(start, database, conn, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database)
    old_failure = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=100))
    recent_failure = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=1))
    myapp = load_module(write_myapp(tmp_path))
    app, retention_tasks = myapp.app, myapp.retention_tasks

    async def defer_twice() -> int:
        async with app.open_async():
            job_id = await retention_tasks.prune_jobs.defer_async(dry_run=True)
            with pytest.raises(exceptions.AlreadyEnqueued):
                await retention_tasks.prune_jobs.defer_async(dry_run=True)
            return job_id

    first = asyncio.run(defer_twice())
    assert job_row(conn, first)[0] == "todo"

    worker = start(MYAPP_WORKER, shell_env(database, PYTHONPATH="."))
    wait_for(lambda: unfinished(conn) == 0, what="the async-deferred job")
    with app.open():
        retention_tasks.prune_jobs.defer(dry_run=True)
        app.tasks["retention:purge_jobs"].defer(statuses=["failed"], finished_before="90d")
    wait_for(lambda: len(runs(conn)) == 3 and unfinished(conn) == 0, what="the sync defers")
    assert worker.terminate() == 0, worker.output()

    ledger = [(r["kind"], r["trigger"], r["dry_run"], r["status"]) for r in runs(conn)]
    assert ledger == [
        ("run", "deferred", True, "succeeded"),
        ("run", "deferred", True, "succeeded"),
        ("purge", "deferred", False, "succeeded"),
    ]
    remaining = {row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs")}
    assert old_failure not in remaining
    assert recent_failure in remaining
    # delete_jobs="successful" in the app's worker_defaults: the succeeded jobs went at once
    assert first not in remaining
    assert not jobs_by_task(conn).get("retention:prune_jobs")


@pytest.mark.parametrize(
    ("command", "left"),
    [(MYAPP_WORKER, {"boom": "failed"}), (MYAPP_WORKER_DELETING, {})],
)
def test_delete_jobs_in_a_users_app(start, database, conn, tmp_path, monkeypatch, command, left):
    monkeypatch.setenv("DATABASE_URL", database)
    myapp = load_module(write_myapp(tmp_path, TEST_TASKS))
    with myapp.app.open():
        myapp.ok.defer()
        myapp.boom.defer()
    worker = start(command, shell_env(database, PYTHONPATH="."))
    wait_for(lambda: unfinished(conn) == 0, what="both jobs to finish")
    assert worker.terminate() == 0, worker.output()
    remaining = dict(conn.execute("SELECT task_name, status::text FROM procrastinate_jobs"))
    assert remaining == left
    assert "Job ok[" in worker.output()
    assert "Job boom[" in worker.output()
