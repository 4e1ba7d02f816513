"""`retention hold add | list | release` as a user runs them: the id printed, the list as JSON,
a run that leaves held jobs and deletes them once released, bad input refused with exit 2 and
nothing written. The real CLI in subprocesses, a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.helpers import job_ids, make_schema, run_cli, seed_job, tables_toml

OLD = dt.timedelta(days=40)


@pytest.fixture
def config(tmp_path, conn):
    make_schema(conn)
    path = tmp_path / "retention.toml"
    policy = {"table": "app.events", "timestamp": "created_at", "age": "30d"}
    path.write_text('[jobs]\nsucceeded = "30d"\n' + tables_toml(policy))
    return path


def _cli(database, config, *args):
    return run_cli("--config", str(config), *args, database=database)


def test_add_list_release_and_the_run_between(conn, database, config):
    held = [seed_job(conn, status="succeeded", finished_ago=OLD) for _ in range(2)]
    free = seed_job(conn, status="succeeded", finished_ago=OLD)
    args = ["hold", "add", "--reason", "case 17", "--until", "30d", "--by", "legal"]
    added = _cli(database, config, *args, *[f"--job-id={i}" for i in held])
    assert added.returncode == 0, added.stderr
    hold_id = int(added.stdout.strip())

    listed = _cli(database, config, "hold", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (hold,) = json.loads(listed.stdout)["holds"]
    assert (hold["id"], hold["job_ids"], hold["reason"]) == (hold_id, sorted(held), "case 17")
    assert (hold["placed_by"], hold["state"]) == ("legal", "active")

    plan = _cli(database, config, "run", "--only", "jobs", "--dry-run", "--json")
    assert json.loads(plan.stdout)["jobs"]["held"] == 2
    run = _cli(database, config, "run", "--only", "jobs", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["jobs"]["deleted"] == 1
    assert job_ids(conn) == set(held)
    assert free not in job_ids(conn)

    status = _cli(database, config, "status", "--json")
    assert json.loads(status.stdout)["holds"]["jobs"] == 1
    metrics = _cli(database, config, "metrics")
    assert 'retention_holds_active{kind="jobs"} 1' in metrics.stdout

    released = _cli(database, config, "hold", "release", str(hold_id))
    assert released.returncode == 0, released.stderr
    assert _cli(database, config, "hold", "list", "--json").stdout.count('"id"') == 0
    run = _cli(database, config, "run", "--only", "jobs", "--json")
    assert json.loads(run.stdout)["jobs"]["deleted"] == 2
    again = _cli(database, config, "hold", "release", str(hold_id))
    assert again.returncode == 2
    assert "already released" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--queue", "q"], "--reason is required"),
        (["--table", "app.nothing", "--key", "1", "--reason", "r"], "not the table of any"),
        (["--table", "app.events", "--key", "x", "--reason", "r"], "is not a valid bigint"),
        (["--table", "app.events", "--where", '{"nope": 1}', "--reason", "r"], "no column"),
        (["--queue", "q", "--reason", "r", "--until", "2001-01-01"], "in the past"),
        (["--reason", "r"], "exactly one of"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(conn, database, config, args, message):
    result = _cli(database, config, "hold", "add", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert conn.execute("SELECT count(*) FROM retention_holds").fetchone()[0] == 0
