"""Bad settings through the real CLI exit 2 and run nothing; `retention config` hides the password."""

from __future__ import annotations

import datetime as dt
import json

from tests.helpers import job_ids, run_cli, seed_job


def test_bad_config_from_the_cli_exits_2_and_runs_nothing(tmp_path, conn, database):
    old = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
    path = tmp_path / "bad.toml"
    path.write_text('[jobs]\nsucceeded = "3x"\n')
    for command in (["run"], ["run", "--dry-run"], ["plan"], ["config"]):
        result = run_cli("--config", str(path), *command, database=database)
        assert result.returncode == 2, result.stderr
        assert "jobs.succeeded" in result.stderr
        assert "'3x'" in result.stderr
        assert "Traceback" not in result.stderr
    assert old in job_ids(conn)
    assert conn.execute("SELECT count(*) FROM retention_runs").fetchone()[0] == 0


def test_bad_environment_variable_exits_2(database):
    result = run_cli("run", database=database, env={"RETENTION_SCHEDULE": "nope"})
    assert result.returncode == 2
    assert "schedule" in result.stderr
    assert "nope" in result.stderr


def test_unknown_cli_option_is_a_usage_error(database):
    result = run_cli("run", "--frobnicate", database=database)
    assert result.returncode == 2
    assert "frobnicate" in result.stderr


def test_config_command_shows_settings_with_the_password_redacted():
    result = run_cli(
        "config", "--json", env={"DATABASE_URL": "postgresql://app:s3cret@db.example:5432/app"}
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "s3cret" not in result.stdout
    assert data["database_url"] == "postgresql://app:***@db.example:5432/app"
