"""A run shows a progress bar on a terminal and structured log lines otherwise."""

from __future__ import annotations

import datetime as dt
import os
import pty
import subprocess
import sys

from tests.helpers import cli_env, run_cli, seed_job


def _on_a_terminal(args: list[str], database: str) -> tuple[int, str]:
    master, slave = pty.openpty()
    env = cli_env(database, COLUMNS="120", TERM="xterm")
    process = subprocess.Popen(
        [sys.executable, "-m", "retention", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    output = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return process.wait(timeout=60), output.decode(errors="replace")


def test_a_terminal_gets_a_progress_bar_and_no_log_lines(conn, database):
    for _ in range(3):
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=9))
    code, screen = _on_a_terminal(["run", "--only", "jobs"], database)
    assert code == 0, screen
    assert "jobs (" in screen
    assert "100%" in screen
    assert "\u2501" in screen
    assert "action=" not in screen
    assert "deleted" in screen


def test_without_a_terminal_log_lines_carry_structure(conn, database):
    seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=9))
    result = run_cli("run", "--only", "jobs", database=database)
    assert result.returncode == 0, result.stderr
    assert "100%" not in result.stdout
    finished = [line for line in result.stderr.splitlines() if 'action="run_finished"' in line]
    assert len(finished) == 1
    assert " INFO retention.run.runner: retention run " in finished[0]
    assert " succeeded in " in finished[0]
    assert ": jobs 1" in finished[0]
