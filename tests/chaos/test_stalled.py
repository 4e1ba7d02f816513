"""A worker SIGKILLed in the middle of `retention:run` leaves that job `doing`, holding the
execution lock of every retention task. A new worker recovers it by itself (retention:recover_stalled,
through Procrastinate's heartbeats): the killed run is abandoned in the ledger, the killed job is
retried (or failed when the next periodic run already waits), the job waiting behind the lock
runs, and so do the periodic runs; nobody touches the database."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import procrastinate
import psycopg
import pytest

import retention
from retention.interfaces import stalled
from tests.helpers import (
    RUN_WORKER,
    Process,
    launcher,
    make_settings,
    seed_bulk,
    shell_env,
    wait_for,
)
from tests.helpers import ledger_runs as runs

OLD_JOBS = 20_000
# Slow enough to be killed mid-run: one job a batch, five seconds a run.
SLOW = {"RETENTION_BATCH_SIZE": "1", "RETENTION_MAX_RUN_SECONDS": "5"}


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    yield from launcher(tmp_path)


def _status(conn: psycopg.Connection, job_id: int) -> str | None:
    row = conn.execute(
        "SELECT status::text FROM procrastinate_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    return row[0] if row else None


def _running_run(conn: psycopg.Connection) -> int | None:
    row = conn.execute(
        "SELECT id FROM retention_runs WHERE status = 'running' AND stage = 'jobs'"
    ).fetchone()
    return row[0] if row else None


def test_a_killed_worker_does_not_stop_retention(start, database, conn, tmp_path):
    seed_bulk(
        conn,
        [
            {
                "status": "succeeded",
                "queue": "default",
                "task": "app.task",
                "finished_ago": dt.timedelta(days=30),
            }
        ]
        * OLD_JOBS,
    )
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database))
    retention_tasks = retention.blueprint(make_settings(database))
    app.add_tasks_from(retention_tasks, namespace="retention")

    first = start(RUN_WORKER, shell_env(database, **SLOW))
    with app.open():
        killed_job = retention_tasks.run.defer()
    killed_run = wait_for(lambda: _running_run(conn), timeout=60, what="the run to start")
    os.kill(first.popen.pid, signal.SIGKILL)
    first.popen.wait()
    killed_at = time.monotonic()
    assert _status(conn, killed_job) == "doing"
    with app.open():
        waiting_job = retention_tasks.prune_jobs.defer()

    # A new worker, whose schedule runs retention every minute: nothing else is done by hand.
    second = start(RUN_WORKER, shell_env(database, RETENTION_SCHEDULE="* * * * *", **SLOW))
    wait_for(
        lambda: _status(conn, killed_job) != "doing",
        timeout=stalled.BOUND_SECONDS + 60,
        what="the killed job to stop holding the lock",
    )
    freed = time.monotonic() - killed_at
    wait_for(
        lambda: _status(conn, waiting_job) == "succeeded",
        timeout=120,
        what="the job waiting behind the killed one",
    )
    recovered = time.monotonic() - killed_at
    print(
        f"\nSIGKILL to the lock freed: {freed:.1f} s; to the next run succeeded: {recovered:.1f} s"
    )

    ledger = {run["id"]: run for run in runs(conn)}
    assert ledger[killed_run]["status"] == "abandoned"
    # Retried, or failed because the periodic run this worker deferred at start already waits
    # with the same queueing lock (and does the same work).
    assert _status(conn, killed_job) in ("succeeded", "failed")

    wait_for(
        lambda: any(
            run["trigger"] == "periodic" and run["status"] == "succeeded" for run in runs(conn)
        ),
        timeout=150,
        what="a periodic run after the recovery",
    )
    assert second.terminate() == 0, second.output()
    output = second.output()
    assert f"job #{killed_job} (retention:run) was left doing by a dead worker" in output
    assert "Traceback" not in output
