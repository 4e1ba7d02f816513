"""`retention status` shows every retention job waiting or running, and why: running on a live
worker, stuck (its worker dead or gone), waiting behind the job holding the execution lock,
scheduled, or waiting for a worker."""

from __future__ import annotations

import io

import psycopg
from rich.console import Console

from retention.config import settings as settings_mod
from retention.interfaces import report, tasks


def _worker(conn: psycopg.Connection, heartbeat_ago: str) -> int:
    row = conn.execute(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - %s::interval) "
        "RETURNING id",
        (heartbeat_ago,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _job(
    conn: psycopg.Connection,
    task: str,
    status: str,
    *,
    worker: int | None = None,
    later: bool = False,
    lock: str | None = tasks.EXECUTION_LOCK,
) -> int:
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status, lock, queueing_lock, "
        "worker_id, scheduled_at) VALUES ('retention', %s, %s, %s, %s, %s, "
        "CASE WHEN %s THEN now() + interval '1 hour' END) RETURNING id",
        (task, status, lock, None, worker, later),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _whys(conn: psycopg.Connection) -> dict[int, str]:
    data = report.status(conn, settings_mod.Settings(), limit=5)
    return {job["id"]: job["why"] for job in data["jobs"]}


def test_a_job_of_a_dead_worker_is_stuck_and_the_next_waits_behind_it(conn):
    dead = _worker(conn, "5 minutes")
    stuck = _job(conn, "retention:run", "doing", worker=dead)
    waiting = _job(conn, "retention:prune_jobs", "todo")
    _job(conn, "app.other", "doing", worker=dead, lock=None)  # not ours: not shown

    whys = _whys(conn)
    assert set(whys) == {stuck, waiting}
    assert whys[stuck].startswith("stuck: its worker's last heartbeat was 300 s ago")
    assert "retention:recover_stalled" in whys[stuck]
    assert whys[waiting].startswith(
        f"waiting behind job #{stuck}, which holds the execution lock {tasks.EXECUTION_LOCK}: stuck"
    )

    out = io.StringIO()
    report.print_status(
        Console(file=out, width=200), report.status(conn, settings_mod.Settings(), limit=5)
    )
    shown = out.getvalue()
    assert f"job #{stuck} (retention:run, doing): stuck" in shown
    assert f"job #{waiting} (retention:prune_jobs, todo): waiting behind job #{stuck}" in shown


def test_running_gone_scheduled_and_waiting_for_a_worker(conn):
    alive = _worker(conn, "1 second")
    running = _job(conn, "retention:run", "doing", worker=alive)
    whys = _whys(conn)
    assert whys == {running: f"running on worker {alive}"}

    conn.execute("UPDATE procrastinate_jobs SET worker_id = NULL WHERE id = %s", (running,))
    assert _whys(conn)[running].startswith("stuck: its worker is gone (killed?)")

    conn.execute("DELETE FROM procrastinate_jobs")
    later = _job(conn, "retention:run", "todo", later=True)
    idle = _job(conn, "retention:purge_jobs", "todo")
    whys = _whys(conn)
    assert whys[later].startswith("scheduled for ")
    assert whys[idle] == "waiting for a worker on the queue retention"
