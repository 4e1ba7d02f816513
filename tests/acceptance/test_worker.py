"""Real workers in subprocesses: `retention worker` and `procrastinate --app=retention.app worker`
against the test database: the periodic schedule, delete_jobs, locks, abort and SIGTERM."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest

import retention
from tests.helpers import (
    RUN_WORKER,
    RUN_WORKER_ONCE,
    Process,
    jobs_by_task,
    launcher,
    make_settings,
    seed_job,
    shell_env,
    wait_for,
    workers,
)
from tests.helpers import ledger_runs as runs

# The jobs of a test, without the periodic retention:recover_stalled of the worker.
NOT_RECOVERY = (
    "SELECT id, status::text FROM procrastinate_jobs WHERE task_name <> 'retention:recover_stalled'"
)

READY_MADE_WORKER = "procrastinate --app=retention.app worker"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    yield from launcher(tmp_path)


def deferring_app(database: str, **settings: Any) -> tuple[procrastinate.App, Any]:
    """An application of the test's own with the retention tasks, to defer them."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database))
    retention_tasks = retention.blueprint(make_settings(database, **settings))
    app.add_tasks_from(retention_tasks, namespace="retention")
    return app, retention_tasks


def seed_old_succeeded_jobs(conn: psycopg.Connection, count: int) -> None:
    """`count` jobs that succeeded 10 days ago, with the events Procrastinate writes."""
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status) "
        "SELECT 'default', 'app.task', 'todo' FROM generate_series(1, %s)",
        (count,),
    )
    conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE task_name = 'app.task'")
    conn.execute("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE task_name = 'app.task'")
    conn.execute("UPDATE procrastinate_events SET at = now() - interval '10 days'")


def old_jobs_left(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'app.task'"
    ).fetchone()[0]


def test_retention_worker_registers_and_stops_cleanly_on_sigterm(start, database, conn):
    worker = start(RUN_WORKER, shell_env(database))
    wait_for(lambda: workers(conn) == 1, what="the worker's row in procrastinate_workers")
    assert worker.popen.poll() is None
    assert worker.terminate() == 0, worker.output()
    assert workers(conn) == 0
    assert "Stopped worker on queues retention" in worker.output()


def test_ready_made_app_worker_listens_to_the_retention_queue_only(start, database, conn):
    app, retention_tasks = deferring_app(database)
    with app.open():
        other = app.configure_task("app.elsewhere", allow_unknown=True, queue="default").defer()
        prune = retention_tasks.prune_jobs.defer(dry_run=True)
    worker = start(READY_MADE_WORKER, shell_env(database))
    wait_for(
        lambda: conn.execute(
            "SELECT status = 'succeeded' FROM procrastinate_jobs WHERE id = %s", (prune,)
        ).fetchone()[0],
        what="the retention job to succeed",
    )
    assert worker.terminate() == 0, worker.output()
    statuses = dict(conn.execute(NOT_RECOVERY).fetchall())
    assert statuses == {other: "todo", prune: "succeeded"}
    assert workers(conn) == 0


def test_a_worker_defers_the_periodic_run_with_trigger_periodic(start, database, conn):
    worker = start(RUN_WORKER, shell_env(database, RETENTION_SCHEDULE="* * * * *"))
    wait_for(
        lambda: any(r["status"] == "succeeded" for r in runs(conn)),
        timeout=60,
        what="the periodic run",
    )
    assert worker.terminate() == 0, worker.output()
    [(_, status, args)] = jobs_by_task(conn)["retention:run"]
    assert status == "succeeded"
    assert set(args) == {"timestamp"}
    [run] = runs(conn)
    assert (run["kind"], run["trigger"], run["dry_run"]) == ("run", "periodic", False)
    assert "jobs" in run["summary"]


def test_jobs_schedule_makes_prune_jobs_periodic_and_run_skips_jobs(start, database, conn):
    env = shell_env(database, RETENTION_SCHEDULE="* * * * *", RETENTION_JOBS__SCHEDULE="* * * * *")
    worker = start(RUN_WORKER, env)
    wait_for(
        lambda: sum(r["status"] == "succeeded" for r in runs(conn)) == 2,
        timeout=60,
        what="both periodic runs",
    )
    assert worker.terminate() == 0, worker.output()
    tasks = jobs_by_task(conn)
    tasks.pop("retention:recover_stalled", None)  # its own periodic job, every minute
    assert {task: [status for _, status, _ in found] for task, found in tasks.items()} == {
        "retention:run": ["succeeded"],
        "retention:prune_jobs": ["succeeded"],
    }
    assert all(set(args) == {"timestamp"} for found in tasks.values() for _, _, args in found)
    by_stages = {tuple(sorted(set(r["summary"]) & {"jobs"})): r for r in runs(conn)}
    assert set(by_stages) == {(), ("jobs",)}
    assert {r["trigger"] for r in by_stages.values()} == {"periodic"}


@pytest.mark.parametrize(
    ("policy", "left"),
    [("never", {"succeeded", "failed"}), ("successful", {"failed"}), ("always", set())],
)
def test_the_retention_worker_applies_delete_jobs(start, database, conn, policy, left):
    app, retention_tasks = deferring_app(database)
    with app.open():
        retention_tasks.prune_jobs.defer(dry_run=True)
        retention_tasks.run.defer(only=["no-such-stage"])
    worker = start(RUN_WORKER_ONCE, shell_env(database, RETENTION_DELETE_JOBS=policy))
    assert worker.wait() == 0, worker.output()
    assert "Job retention:run" in worker.output()
    assert "Error" in worker.output()
    remaining = {
        task: status
        for task, status in conn.execute(
            "SELECT task_name, status::text FROM procrastinate_jobs "
            "WHERE task_name <> 'retention:recover_stalled'"
        )
    }
    expected = {"retention:prune_jobs": "succeeded", "retention:run": "failed"}
    assert remaining == {task: s for task, s in expected.items() if s in left}
    assert [r["status"] for r in runs(conn)] == ["succeeded"]


def test_the_execution_lock_keeps_a_second_retention_job_waiting(start, database, conn):
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, status) "
        "VALUES ('retention', 'retention:run', 'procrastinate-retention', 'todo') RETURNING id"
    ).fetchone()
    running = row[0]
    # Running on a live worker (its heartbeat is in the future): not a stalled job to recover.
    worker = conn.execute(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() + interval '1 hour') "
        "RETURNING id"
    ).fetchone()[0]
    conn.execute(
        "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE id = %s",
        (worker, running),
    )
    app, retention_tasks = deferring_app(database)
    with app.open():
        waiting = retention_tasks.prune_jobs.defer(dry_run=True)

    def status(job_id: int) -> str:
        return conn.execute(
            "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
        ).fetchone()[0]

    first = start(RUN_WORKER_ONCE, shell_env(database))
    assert first.wait() == 0, first.output()
    assert status(waiting) == "todo"
    assert runs(conn) == []
    conn.execute("UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = %s", (running,))
    second = start(RUN_WORKER_ONCE, shell_env(database))
    assert second.wait() == 0, second.output()
    assert status(waiting) == "succeeded"


def test_a_user_abort_stops_the_run_between_batches(start, database, conn):
    total = 30000
    seed_old_succeeded_jobs(conn, total)
    app, retention_tasks = deferring_app(database)
    with app.open():
        job_id = retention_tasks.prune_jobs.defer()
    worker = start(RUN_WORKER, shell_env(database, RETENTION_BATCH_SIZE="5"))
    wait_for(lambda: old_jobs_left(conn) < total, what="the first batches")
    with app.open():
        assert app.job_manager.cancel_job_by_id(job_id, abort=True)
    wait_for(
        lambda: (
            conn.execute(
                "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
            ).fetchone()[0]
            not in ("todo", "doing")
        ),
        what="the job to end",
    )
    status = conn.execute(
        "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
    ).fetchone()[0]
    [run] = runs(conn)
    assert (status, run["status"], run["trigger"]) == ("aborted", "aborted", "deferred")
    assert run["summary"]["stopped"] == "aborted"
    left = old_jobs_left(conn)
    assert 0 < left < total
    assert run["summary"]["jobs"]["deleted"] == total - left
    assert worker.popen.poll() is None
    assert worker.terminate() == 0, worker.output()


def test_sigterm_during_a_run_stops_it_between_batches(start, database, conn):
    total = 30000
    seed_old_succeeded_jobs(conn, total)
    app, retention_tasks = deferring_app(database)
    with app.open():
        retention_tasks.run.defer()
    worker = start(RUN_WORKER, shell_env(database, RETENTION_BATCH_SIZE="5"))
    wait_for(lambda: old_jobs_left(conn) < total, what="the first batches")
    assert worker.terminate(timeout=15) == 0, worker.output()
    [run] = runs(conn)
    assert run["status"] == "aborted"
    left = old_jobs_left(conn)
    assert 0 < left < total
    assert run["summary"]["jobs"]["deleted"] == total - left
    assert workers(conn) == 0


def test_a_periodic_defer_skips_a_task_already_queued(start, database, conn):
    conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, status) "
        "VALUES ('retention', 'retention:prune_jobs', 'procrastinate-retention', 'todo')"
    )
    # Running on a live worker (its heartbeat is in the future): not a stalled job that
    # recover_stalled would free, which would let the queued run start.
    worker = conn.execute(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() + interval '1 hour') "
        "RETURNING id"
    ).fetchone()[0]
    conn.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", (worker,))
    app, retention_tasks = deferring_app(database)
    with app.open():
        queued = retention_tasks.run.defer(dry_run=True)
    worker = start(
        "retention --verbose worker", shell_env(database, RETENTION_SCHEDULE="* * * * *")
    )
    wait_for(
        lambda: "skip_periodic_task_queueing_lock" in worker.output(),
        what="the periodic deferrer to meet the queueing lock",
    )
    assert worker.terminate() == 0, worker.output()
    [(job_id, status, args)] = jobs_by_task(conn)["retention:run"]
    assert (job_id, status, args) == (queued, "todo", {"dry_run": True})


def test_the_worker_refuses_an_unmigrated_database(start, empty_database):
    worker = start(RUN_WORKER, shell_env(empty_database))
    assert worker.wait() == 2
    assert "not migrated" in worker.output()
    assert "retention migrate" in worker.output()


def test_a_purge_job_with_a_bad_argument_fails_saying_why(start, database, conn):
    kept = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=400))
    app, retention_tasks = deferring_app(database)
    with app.open():
        job_id = retention_tasks.purge_jobs.defer(statuses=["failed"], finished_before="soon")
    worker = start(RUN_WORKER_ONCE, shell_env(database))
    assert worker.wait() == 0, worker.output()
    assert "finished_before: 'soon' is neither a timestamp" in worker.output()
    statuses = dict(conn.execute(NOT_RECOVERY).fetchall())
    assert statuses == {kept: "failed", job_id: "failed"}
    assert runs(conn) == []
