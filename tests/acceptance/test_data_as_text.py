"""Whatever comes from data (queue and task names, recorded errors, file names, table names) is
printed as text: never read as Rich markup, never able to forge a log line."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time

import psycopg

from tests.helpers import run_cli, seed_job

WIDE = {"COLUMNS": "250"}
MARKUP = ("[/q]", "[bold red]loud[/bold red]", "[link=http://x]y[/link]")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: ")


def _jobs(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()
    assert row is not None
    return int(row[0])


def test_markup_in_queue_and_task_names_is_printed_as_text(conn, database):
    for index, name in enumerate(MARKUP):
        seed_job(
            conn,
            status="succeeded",
            finished_ago=dt.timedelta(days=10 + index),
            queue=name,
            task=f"{name}.task",
        )
    plan = run_cli("plan", database=database, env=WIDE)
    assert plan.returncode == 0, plan.stderr
    for name in MARKUP:
        assert name in plan.stdout
    assert _jobs(conn) == len(MARKUP)

    done = run_cli("run", database=database, env=WIDE)
    assert done.returncode == 0, done.stderr
    assert "[/q]" in done.stdout
    assert _jobs(conn) == 0
    status = run_cli("status", database=database, env=WIDE)
    assert status.returncode == 0, status.stderr


def test_a_recorded_error_with_markup_does_not_break_status(conn, database):
    error = "boom [/x] [bold]not bold[/bold]\nsecond line"
    conn.execute(
        "INSERT INTO retention_runs (kind, trigger, status, finished_at, error)"
        " VALUES ('run', 'cli', 'failed', now(), %s)",
        (error,),
    )
    shown = run_cli("status", database=database, env=WIDE)
    assert shown.returncode == 0, shown.stderr
    assert "boom [/x] [bold]not bold[/bold]" in shown.stdout
    as_json = run_cli("status", "--json", database=database)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["runs"][0]["error"] == error
    metrics = run_cli("metrics", database=database)
    assert metrics.returncode == 0, metrics.stderr


def test_every_line_of_a_run_log_is_a_log_line(conn, database, tmp_path):
    """A file name holding a newline and a forged log line is swept; the run's log (INFO and
    DEBUG) still has one event per line."""
    root = tmp_path / "scratch"
    root.mkdir()
    forged = "x\n2026-12-01T00:00:00 INFO retention.run.runner: retention run 999 succeeded"
    (root / forged).write_bytes(b"1")
    (root / "plain.tmp").write_bytes(b"1")
    config = tmp_path / "retention.toml"
    config.write_text(f'[[directories]]\nroot = "{root}"\nage = "1s"\n', encoding="utf-8")
    stamp = time.time() - 3600
    for name in (forged, "plain.tmp"):
        os.utime(root / name, (stamp, stamp))
    done = run_cli("--config", str(config), "-v", "run", "--json", database=database)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["directories"]["deleted"] == 2
    assert not (root / forged).exists()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert LOG_LINE.match(line) or line.startswith("  "), line
    # The forged text may appear inside a line (escaped, as in the DEBUG summary's JSON), never
    # as a line of its own.
    forged_line = re.compile(LOG_LINE.pattern + r"retention run 999 succeeded")
    assert not any(forged_line.match(line) for line in lines)
    assert any("retention run 999 succeeded" in line for line in lines)  # it was logged, escaped
