"""A run SIGKILLed mid-way leaves an abandoned ledger row; the next run finishes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psycopg

from retention.engine import ledger
from tests.helpers import cli_env, run_cli, wait_for_killed_sessions


def _seed_many_old_jobs(conn: psycopg.Connection, count: int) -> None:
    conn.execute(
        """
        WITH jobs AS (
            INSERT INTO procrastinate_jobs (queue_name, task_name, status)
            SELECT 'q', 't', 'succeeded' FROM generate_series(1, %(n)s)
            RETURNING id)
        INSERT INTO procrastinate_events (job_id, type, at)
        SELECT id, 'succeeded', now() - interval '40 days' + id * interval '1 second' FROM jobs
        """,
        {"n": count},
    )


def test_sigkill_mid_run_leaves_an_abandoned_row_and_the_next_run_finishes(conn, database):
    _seed_many_old_jobs(conn, 20000)
    env = cli_env(
        database,
        RETENTION_BATCH_SIZE="10",
        RETENTION_MAX_BATCH_SECONDS="0.5",
        RETENTION_LOCK_TIMEOUT="100ms",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention", "run", "--only", "jobs"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT id, progress FROM retention_runs WHERE status = 'running'"
        ).fetchone()
        if row and conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] < 19000:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for_killed_sessions(conn)
    assert row is not None
    remaining = conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0]
    assert 0 < remaining < 20000
    result = run_cli("run", "--only", "jobs", "--json", database=database)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["jobs"]["deleted"] == remaining
    assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 0
    killed = ledger.get(conn, row[0])
    assert killed is not None
    assert killed["status"] == "abandoned"
    status = run_cli("status", "--json", database=database)
    assert status.returncode == 0, status.stderr
    statuses = {r["id"]: r["status"] for r in json.loads(status.stdout)["runs"]}
    assert statuses[row[0]] == "abandoned"
    assert statuses[summary["run_id"]] == "succeeded"
