"""The real CLI refuses every bad setting up front: exit 2, the key (or the variable) named on
stderr, no traceback, nothing deleted, no run recorded, and no secret shown."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers import job_ids, run_cli, seed_job

JOBS = '[jobs]\nsucceeded = "1d"\n'
TABLE = '[[tables]]\ntable = "events"\ntimestamp = "created_at"\n'
SECRET = "Pw4Leak9"

# Each would otherwise be found out mid-run (an OverflowError, exit 1, a traceback), or not at
# all (a lock wait without a timeout, a run without a time budget).
BAD_FILES = [
    (TABLE + 'age = "999999999d"\n', "tables.0.age"),
    ("retention_days = 1000000\n" + TABLE, "retention_days"),
    ('[jobs]\nsucceeded = "99999999999d"\n', "jobs.succeeded"),
    ("[jobs]\nsucceeded = 1e30\n", "jobs.succeeded"),
    ("[jobs]\nfailed = inf\n", "jobs.failed"),
    ("[jobs]\ncancelled = nan\n", "jobs.cancelled"),
    ("max_batch_seconds = inf\n" + JOBS, "max_batch_seconds"),
    ("max_batch_seconds = nan\n" + JOBS, "max_batch_seconds"),
    ("max_run_seconds = inf\n" + JOBS, "max_run_seconds"),
    ('lock_timeout = "25d"\nmax_batch_seconds = 1e10\n' + JOBS, "lock_timeout"),
    ('lock_timeout = "0.5ms"\n' + JOBS, "lock_timeout"),
    (TABLE + 'where = {kind = "a\\u0000b"}\n', "tables.0.where"),
    ('queue = "retention\\u0000"\n' + JOBS, "queue"),
    ('jobs_path = "fast"\n' + JOBS, "jobs_path"),
]


@pytest.mark.parametrize(("text", "key"), BAD_FILES)
def test_config_and_dry_run_refuse_the_file_naming_the_key(tmp_path, database, text, key):
    path = tmp_path / "retention.toml"
    path.write_text(text)
    for command in (["config"], ["run", "--dry-run"]):
        result = run_cli("--config", str(path), *command, database=database)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert f"  - {key}: " in result.stderr, result.stderr
        assert f"from the file {path}" in result.stderr
        assert "Traceback" not in result.stderr


# A valid jobs policy that would delete the old jobs, and one bad value beside it.
BAD_RUNS = [
    ({}, 'lock_timeout = "0.5ms"\n' + JOBS, "lock_timeout"),
    ({}, "max_run_seconds = inf\n" + JOBS, "max_run_seconds"),
    ({}, "max_batch_seconds = inf\n" + JOBS, "max_batch_seconds"),
    ({}, '[jobs]\nsucceeded = "1d"\nfailed = "99999999999d"\n', "jobs.failed"),
    ({}, "retention_days = 1000000\n" + JOBS + TABLE, "retention_days"),
    ({"RETENTION_BACTH_SIZE": "10"}, JOBS, "RETENTION_BACTH_SIZE"),
    ({"RETENTION_JOBS__SUCEEDED": "1h"}, JOBS, "RETENTION_JOBS__SUCEEDED"),
    ({"RETENTION_LOCK_TIMEOUT": "0.5ms"}, JOBS, "lock_timeout"),
    ({"RETENTION_JOBS_PATH": "set-based"}, JOBS, "jobs_path"),
]


@pytest.mark.parametrize(("env", "text", "named"), BAD_RUNS)
def test_a_run_with_a_bad_setting_deletes_nothing(tmp_path, conn, database, env, text, named):
    old = {
        seed_job(conn, status=status, finished_ago=dt.timedelta(days=60))
        for status in ("succeeded", "succeeded", "failed")
    }
    before = job_ids(conn)
    assert old <= before
    path = tmp_path / "retention.toml"
    path.write_text(text)
    result = run_cli("--config", str(path), "run", database=database, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"  - {named}: " in result.stderr or f"environment variable {named}:" in result.stderr
    assert "Traceback" not in result.stderr
    assert job_ids(conn) == before
    assert conn.execute("SELECT count(*) FROM retention_runs").fetchone()[0] == 0


def test_a_misspelled_variable_is_named_with_its_right_name(database):
    result = run_cli("config", database=database, env={"RETENTION_BACTH_SIZE": "10"})
    assert result.returncode == 2
    assert "RETENTION_BACTH_SIZE" in result.stderr
    assert "did you mean RETENTION_BATCH_SIZE?" in result.stderr


def test_a_bad_variable_is_blamed_on_the_variable_not_the_file(tmp_path, database):
    path = tmp_path / "retention.toml"
    path.write_text(JOBS)
    result = run_cli(
        "--config", str(path), "run", database=database, env={"RETENTION_BATCH_SIZE": "0"}
    )
    assert result.returncode == 2
    assert "batch_size" in result.stderr
    assert "from environment variable RETENTION_BATCH_SIZE" in result.stderr
    assert str(path) not in result.stderr


def test_a_misspelled_database_url_is_named_but_not_shown(tmp_path, database):
    path = tmp_path / "retention.toml"
    path.write_text(f'databse_url = "postgresql://app:{SECRET}@db.example/app"\n')
    for command in (["config"], ["run", "--dry-run"]):
        result = run_cli("--config", str(path), *command, database=database)
        assert result.returncode == 2
        assert "databse_url" in result.stderr
        assert "(value hidden)" in result.stderr
        assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "url",
    [
        f"host=127.0.0.1 password=abc\\ {SECRET} bogus_option=1",
        f"host=127.0.0.1 password='a {SECRET}' bogus_option=1",
        f"postgresql://app:{SECRET}@127.0.0.1/app?bogus_param=1",
    ],
)
def test_an_invalid_database_url_is_refused_without_its_password(url):
    result = run_cli("--database-url", url, "db")
    assert result.returncode == 2, result.stderr
    assert "not a valid libpq" in result.stderr
    assert SECRET not in result.stderr + result.stdout


def test_the_config_command_shows_an_escaped_password_redacted():
    url = f"host=db.example user=app password=abc\\ {SECRET} dbname=app"
    result = run_cli("config", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    assert "password=***" in result.stdout
