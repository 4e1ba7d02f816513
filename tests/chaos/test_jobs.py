"""Job retention under contention: real workers running during the prune, a row locked by another
transaction, a deadlock, a run SIGKILLed mid-way."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from retention.config import policies
from retention.engine import batches
from retention.jobs import prune
from tests.helpers import (
    cli_env,
    job_ids,
    jobs_policy,
    make_settings,
    prune_limits,
    run_cli,
    run_jobs,
    seed_bulk,
    seed_job,
    wait_for_killed_sessions,
)

FINAL = policies.FINAL_STATUSES


WORKER_APP = """
import os
import time

import procrastinate
import psycopg

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ["TEST_DATABASE"])
)


def record(n):
    with psycopg.connect(os.environ["TEST_DATABASE"], autocommit=True) as conn:
        conn.execute("INSERT INTO ran (n) VALUES (%s)", (n,))


@app.task(name="sleepy", queue="work")
def sleepy(n):
    time.sleep(0.01 * (n % 5))
    record(n)


@app.task(name="flaky", queue="work", retry=1)
def flaky(n):
    record(n)
    raise RuntimeError("flaky fails")
"""


def unfinished(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
    ).fetchone()
    assert row is not None
    return row[0]


def test_running_workers_lose_no_job(conn, database, location, tmp_path: Path, monkeypatch):
    conn.execute("CREATE TABLE ran (n int NOT NULL)")
    conn.execute("CREATE TABLE deleted_jobs (id bigint, status text)")
    conn.execute(
        "CREATE FUNCTION audit_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO deleted_jobs VALUES (OLD.id, OLD.status::text); RETURN OLD; END $$"
    )
    conn.execute(
        "CREATE TRIGGER audit_delete BEFORE DELETE ON procrastinate_jobs "
        "FOR EACH ROW EXECUTE FUNCTION audit_delete()"
    )
    old = seed_bulk(
        conn,
        [
            {
                "status": "succeeded",
                "queue": "work",
                "task": "sleepy",
                "finished_ago": dt.timedelta(days=4),
            }
        ]
        * 1500,
    )
    (tmp_path / "worker_app.py").write_text(textwrap.dedent(WORKER_APP))
    env = {**os.environ, "TEST_DATABASE": database, "PYTHONPATH": str(tmp_path)}
    sys.path.insert(0, str(tmp_path))
    monkeypatch.setenv("TEST_DATABASE", database)
    try:
        import worker_app  # type: ignore[import-not-found]

        with worker_app.app.open():
            for n in range(200):
                worker_app.sleepy.defer(n=n)
            for n in range(1000, 1020):
                worker_app.flaky.defer(n=n)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("worker_app", None)

    settings = make_settings(
        database,
        batch_size=10,
        jobs={"succeeded": "1s", "failed": "1s", "cancelled": "1s", "aborted": "1s"},
    )
    log = tmp_path / "worker.log"
    runs, rounds = 0, 0
    while unfinished(conn) and rounds < 5:
        rounds += 1
        with log.open("a") as sink:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "procrastinate",
                    "--app=worker_app.app",
                    "worker",
                    "--one-shot",
                    "--concurrency=4",
                    "--queues=work",
                ],
                env=env,
                cwd=tmp_path,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
            try:
                while worker.poll() is None and runs < 1000:
                    run_jobs(settings, location)
                    runs += 1
                worker.wait(timeout=120)
            finally:
                if worker.poll() is None:
                    worker.kill()
        assert worker.returncode == 0, log.read_text()
    output = log.read_text()
    assert unfinished(conn) == 0
    assert runs >= 2
    assert "not found" not in output.lower(), output

    assert conn.execute(
        "SELECT count(*) FROM deleted_jobs WHERE status NOT IN "
        "('succeeded', 'failed', 'cancelled', 'aborted')"
    ).fetchone() == (0,)
    ran = [row[0] for row in conn.execute("SELECT n FROM ran ORDER BY n")]
    assert ran == list(range(200)) + sorted(list(range(1000, 1020)) * 2)
    assert set(old).isdisjoint(job_ids(conn))
    statuses = {row[0] for row in conn.execute("SELECT status::text FROM procrastinate_jobs")}
    assert statuses <= {"succeeded", "failed"}

    time.sleep(1.2)
    run_jobs(settings, location)
    assert job_ids(conn) == set()
    deleted = conn.execute(
        "SELECT status, count(*) FROM deleted_jobs GROUP BY status ORDER BY status"
    ).fetchall()
    assert deleted == [("failed", 20), ("succeeded", 1700)]


def test_a_job_locked_by_another_transaction_is_skipped_not_waited_for(conn, database):
    """A batch that meets a row another transaction holds locked waits at most lock_timeout, then
    the walk skips locked rows: the other jobs go, the locked one stays for the next run."""
    old = [
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=40)) for _ in range(30)
    ]
    held = old[10]
    policy = jobs_policy(database, succeeded="30d")
    limits = dict(batch_size=100, max_batch_seconds=5.0, lock_timeout=0.2)
    with psycopg.connect(database) as other:
        other.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s FOR UPDATE", (held,))
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        started = time.monotonic()
        with psycopg.connect(database, autocommit=True) as pruning:
            result = batches.run(
                pruning,
                prune.prune_target(pruning, policy, now),
                prune_limits(**limits),
                dry_run=False,
            )
        assert time.monotonic() - started < 3
        assert result.stopped is None
        assert result.lock_backoffs == 1
        assert result.deleted == 29
        assert result.counts["events"] == 29 * 3
        assert job_ids(conn) == {held}
    again = batches.run(
        conn,
        prune.prune_target(conn, policy, now),
        prune_limits(**limits),
        dry_run=False,
    )
    assert again.deleted == 1
    assert again.lock_backoffs == 0
    assert job_ids(conn) == set()


def test_a_batch_chosen_as_deadlock_victim_goes_on_skipping_locked_rows(conn, database):
    """With lock_timeout longer than deadlock_timeout, a batch that deleted job A and waits for
    job B, held by a transaction that then asks for A, is the deadlock's victim: the walk goes on
    with the skip-locked statement instead of failing the run."""
    first = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=41))
    second = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=40))
    rest = [
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=39)) for _ in range(5)
    ]
    policy = jobs_policy(database, succeeded="30d")
    limits = prune_limits(batch_size=100, max_batch_seconds=20.0, lock_timeout=10)
    outcome: dict[str, Any] = {}
    with psycopg.connect(database) as other:
        other.execute("SET deadlock_timeout = '30s'")
        other.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s FOR UPDATE", (second,))

        def pruner() -> None:
            try:
                with psycopg.connect(database, autocommit=True) as pruning:
                    pruning.execute("SET deadlock_timeout = '1s'")
                    outcome["pid"] = pruning.info.backend_pid
                    now = pruning.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
                    target = prune.prune_target(pruning, policy, now)
                    outcome["result"] = batches.run(pruning, target, limits, dry_run=False)
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=pruner)
        thread.start()
        for _ in range(750):
            pid = outcome.get("pid")
            row = (
                pid
                and conn.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone()
            )
            if (row and row[0] == "Lock") or "error" in outcome:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the batch never waited for the held row")
        # Now ask for the job the waiting batch has deleted: a cycle, which the batch detects.
        other.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s FOR UPDATE", (first,))
        thread.join(30)
        assert "error" not in outcome, outcome.get("error")
        result = outcome["result"]
        assert result.stopped is None, result
        assert result.lock_backoffs == 1, result
        assert result.deleted == len(rest), result
        assert job_ids(conn) == {first, second}


def test_sigkill_mid_run_then_a_rerun_finishes_the_job(conn, database, tmp_path: Path):
    doomed = set(
        seed_bulk(
            conn,
            [
                {
                    "status": FINAL[i % 4],
                    "queue": "q",
                    "task": "t",
                    "finished_ago": dt.timedelta(days=60),
                }
                for i in range(3000)
            ],
        )
    )
    kept = {
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(hours=1)),
        seed_job(conn, status="todo", finished_ago=None),
        seed_job(conn, status="doing", finished_ago=None),
    }
    for job_id in sorted(doomed)[::100]:
        conn.execute(
            "INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id) "
            "VALUES ('t', %s, %s)",
            (job_id, job_id),
        )
    config = tmp_path / "retention.toml"
    config.write_text("batch_size = 10\n")
    env = cli_env(database)
    killed = 0
    for _ in range(3):
        before = len(job_ids(conn))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "retention",
                "--config",
                str(config),
                "run",
                "--only",
                "jobs",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(job_ids(conn)) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        if process.poll() is None:
            process.kill()
            killed += 1
        process.wait(timeout=30)
        wait_for_killed_sessions(conn)
        remaining = job_ids(conn)
        assert kept <= remaining
        assert remaining - kept <= doomed
        events = conn.execute(
            "SELECT count(DISTINCT job_id) FROM procrastinate_events WHERE job_id = ANY(%s)",
            (list(remaining - kept),),
        ).fetchone()
        assert events == (len(remaining - kept),)
        linked = conn.execute(
            "SELECT count(*) FROM procrastinate_periodic_defers WHERE job_id IS NOT NULL"
        ).fetchone()
        assert linked is not None
        assert linked[0] == len((remaining - kept) & set(sorted(doomed)[::100]))
    assert killed >= 1

    done = run_cli("--config", str(config), "run", "--only", "jobs", "--json", database=database)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["complete"] is True
    assert job_ids(conn) == kept
    assert conn.execute("SELECT count(*) FROM procrastinate_periodic_defers").fetchone() == (30,)
    statuses = [row[0] for row in conn.execute("SELECT status FROM retention_runs ORDER BY id")]
    assert statuses.count("abandoned") == killed
    assert statuses[-1] == "succeeded"
