from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from conftest import cli_env, make_settings, run_cli, wait_for_killed_sessions

from retention import errors
from retention.engine import ledger
from retention.run import runner


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


def test_a_run_is_recorded_with_settings_summary_and_trigger(conn, database, location):
    settings = make_settings(database, batch_size=7)
    summary = runner.execute(settings, location, stages=["jobs"], dry_run=True, trigger="cli")
    row = ledger.get(conn, summary["run_id"])
    assert row is not None
    assert row["status"] == "succeeded" and row["trigger"] == "cli" and row["dry_run"] is True
    assert row["finished_at"] is not None and row["progress"] == 100.0
    assert row["settings"]["batch_size"] == 7
    assert row["summary"]["jobs"]["deleted"] == 0


def test_a_run_whose_session_died_is_abandoned_by_the_next(conn, database, location):
    dead = psycopg.connect(database, autocommit=True)
    run = ledger.start(dead, kind="run", trigger="cli", dry_run=False, settings={}, exclusive=True)
    dead.close()
    time.sleep(0.2)
    summary = runner.execute(
        make_settings(database), location, stages=["jobs"], dry_run=False, trigger="cli"
    )
    row = ledger.get(conn, run.id)
    assert row is not None and row["status"] == "abandoned"
    assert "killed" in row["error"]
    assert ledger.get(conn, summary["run_id"])["status"] == "succeeded"


def test_two_real_runs_at_once_are_refused_dry_runs_are_not(conn, database, location):
    holder = psycopg.connect(database, autocommit=True)
    try:
        ledger.start(holder, kind="run", trigger="cli", dry_run=False, settings={}, exclusive=True)
        with pytest.raises(errors.RunFailed, match="in progress"):
            runner.execute(
                make_settings(database), location, stages=["jobs"], dry_run=False, trigger="cli"
            )
        preview = runner.execute(
            make_settings(database), location, stages=["jobs"], dry_run=True, trigger="cli"
        )
        assert preview["status"] == "succeeded"
    finally:
        holder.close()


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
    assert killed is not None and killed["status"] == "abandoned"
    status = run_cli("status", "--json", database=database)
    assert status.returncode == 0, status.stderr
    statuses = {r["id"]: r["status"] for r in json.loads(status.stdout)["runs"]}
    assert statuses[row[0]] == "abandoned"
    assert statuses[summary["run_id"]] == "succeeded"


def test_status_shows_runs(conn, database, location):
    runner.execute(make_settings(database), location, stages=["jobs"], dry_run=False, trigger="cli")
    result = run_cli("status", database=database)
    assert result.returncode == 0, result.stderr
    assert "recent runs" in result.stdout and "succeeded" in result.stdout
