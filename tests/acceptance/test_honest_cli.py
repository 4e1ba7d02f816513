"""The `retention` command tells the truth: exit code 3 when the database cannot be reached,
`retention db` as plain lines, flags shown as flags, arguments checked before any database is
located or started, and, as root, no directory outside RETENTION_HOME changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from retention.interfaces import cli
from tests.helpers import run_cli

UNREACHABLE = {
    "refused": "postgresql://app:topsecret@127.0.0.1:1/app?connect_timeout=5",
    "unknown host": "postgresql://app:topsecret@no-such-host.invalid/app?connect_timeout=5",
    "authentication": "postgresql://no_such_role:topsecret@127.0.0.1/postgres?connect_timeout=5",
}


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory others may enter (as root, the embedded server's own user must)."""
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    run_cli("db", "--stop", env={"RETENTION_HOME": str(path / "h")})
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("why", sorted(UNREACHABLE))
@pytest.mark.parametrize("command", [("status",), ("run", "--dry-run"), ("migrate",)])
def test_an_unreachable_database_exits_3_saying_which_and_how_to_fix(why, command):
    result = run_cli(*command, database=UNREACHABLE[why])

    assert result.returncode == 3, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot connect to the database (DATABASE_URL: ")
    assert "app:***@" in lines[0] or "no_such_role:***@" in lines[0]
    assert "check that the server runs" in lines[0]
    assert "topsecret" not in result.stderr + result.stdout


def test_the_exit_codes_are_documented_in_the_cli_and_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for text in (cli.__doc__ or "", readme):
        assert "3 the database cannot be reached" in text


def test_db_says_when_it_cannot_connect_and_exits_3():
    result = run_cli("db", database=UNREACHABLE["refused"])

    assert result.returncode == 3, result.stderr
    assert "source: DATABASE_URL" in result.stdout
    assert "conninfo: postgresql://app:***@127.0.0.1:1/app" in result.stdout
    assert "error: cannot connect" in result.stderr


def test_db_on_the_embedded_default_shows_plain_lines_and_starts_nothing(base: Path):
    home = base / "h"
    shown = run_cli("db", env={"RETENTION_HOME": str(home)})

    assert shown.returncode == 0, shown.stderr
    assert "libpq defaults" not in shown.stdout
    assert "{" not in shown.stdout
    assert "'running'" not in shown.stdout
    assert "source: embedded" in shown.stdout
    assert f"home: {home}" in shown.stdout
    assert "running: no" in shown.stdout
    assert not home.exists(), "retention db created or started the embedded server"
    data = json.loads(run_cli("db", "--json", env={"RETENTION_HOME": str(home)}).stdout)
    assert data["source"] == "embedded"
    assert data["running"] is False


@pytest.mark.parametrize("command", ["run", "plan", "purge", "demo", "sweep-orphans", "worker"])
def test_flags_are_shown_as_flags(command):
    result = run_cli(command, "--help", env={"COLUMNS": "200"})

    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout


def test_a_flag_given_a_value_is_refused_as_the_help_says():
    shown = run_cli("run", "--help", env={"COLUMNS": "200"}).stdout
    line = next(line for line in shown.splitlines() if "--dry-run" in line)
    assert "<" not in line, line
    result = run_cli("run", "--dry-run", "true", database=UNREACHABLE["refused"])
    assert result.returncode == 2


def test_purge_lists_the_statuses_in_its_help_and_its_errors():
    shown = run_cli("purge", "--help", env={"COLUMNS": "200"}).stdout
    assert "succeeded, failed, cancelled, aborted" in shown
    result = run_cli("purge", "--status", "done", database=UNREACHABLE["refused"])
    assert result.returncode == 2
    assert "succeeded, failed, cancelled, aborted" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("purge", "--status", "todo"),
        ("purge", "--status", "doing"),
        ("purge", "--status", "nonsense"),
        ("purge", "--queue", "emails[", "--dry-run"),
        ("purge", "--finished-before", "yesterdayish"),
        ("purge", "--dry-run"),
        ("run", "--only", "nonsense"),
        ("migrate", "--wait", "forever-ish"),
        ("sweep-orphans", "--grace", "soon"),
    ],
)
def test_bad_arguments_are_refused_before_any_database_is_started(base: Path, args):
    home = base / "h"
    result = run_cli(*args, env={"RETENTION_HOME": str(home)})

    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.startswith("error: ") or "Usage" in result.stderr, result.stderr
    assert not home.exists(), f"{args}: the embedded server was started before refusing"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_no_directory_outside_the_home_changes(base: Path):
    user_home = Path(tempfile.mkdtemp(prefix="rt-root-", dir="/tmp"))
    try:
        user_home.chmod(0o700)
        private = user_home / "h"
        refused = run_cli("status", env={"HOME": str(user_home), "RETENTION_HOME": str(private)})
        assert oct(user_home.stat().st_mode & 0o777) == "0o700"
        assert refused.returncode == 2, refused.stderr
        assert "never changes a directory outside RETENTION_HOME" in refused.stderr
        assert str(user_home) in refused.stderr

        base.chmod(0o755)
        started = run_cli("status", env={"HOME": str(user_home), "RETENTION_HOME": str(base / "h")})
        assert started.returncode == 0, started.stderr
        assert oct(user_home.stat().st_mode & 0o777) == "0o700"
        assert oct(base.stat().st_mode & 0o777) == "0o755"
        assert "traverse" not in started.stderr
    finally:
        shutil.rmtree(user_home, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")
def test_as_root_the_default_home_is_one_the_server_can_reach():
    from retention.embedded import datadir
    from retention.embedded import server as embedded

    code = (
        "import os; os.environ.pop('RETENTION_HOME', None); "
        "from retention.embedded import server; print(server.default_home())"
    )
    import sys

    shown = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": "/nonexistent-home"},
        check=True,
    ).stdout.strip()
    assert Path(shown) == datadir.ROOT_HOME == embedded.datadir.ROOT_HOME
    assert datadir.blocked_ancestor(datadir.ROOT_HOME.parent) is None


def test_delete_images_after_a_plain_demo_says_why_nothing_went(database: str, tmp_path: Path):
    env = {"RETENTION_HOME": str(tmp_path / "home")}
    plain = run_cli("demo", database=database, env=env)
    assert plain.returncode == 0, plain.stderr

    again = run_cli("demo", "--delete-images", database=database, env=env)

    assert again.returncode == 0, again.stderr
    shown = " ".join(again.stdout.split())
    assert "--delete-images deleted no image" in shown
    assert "took their rows with them" in shown
    assert "retention demo --reset --delete-images" in shown


def test_a_worker_logs_a_run_as_one_short_line_not_its_whole_summary(database: str):
    from tests.helpers import BIN, cli_env

    deferred = subprocess.run(
        [str(BIN / "procrastinate"), "--app=retention.app", "defer", "retention:run", "{}"],
        capture_output=True,
        text=True,
        env=cli_env(database),
        timeout=120,
    )
    assert deferred.returncode == 0, deferred.stderr

    worker = run_cli("worker", "--one-shot", database=database)

    assert worker.returncode == 0, worker.stderr
    ended = [
        line for line in worker.stderr.splitlines() if "retention:run[" in line and "ended" in line
    ]
    assert len(ended) == 1, worker.stderr
    assert " - run #" in ended[0]
    assert "summary_version" not in ended[0]
    assert "attached to the embedded server" not in worker.stderr
