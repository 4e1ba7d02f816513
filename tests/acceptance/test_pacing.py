"""The pacing settings through the real CLI: a bad value (negative, absurd) is refused with exit 2
naming the key, before anything is recorded or deleted; good ones are shown by `retention config`
and paced runs report their pauses."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pytest

from tests.helpers import job_ids, ledger_runs, run_cli, seed_job


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RETENTION_PAUSE_BETWEEN_BATCHES", "-1s"),
        ("RETENTION_PAUSE_BETWEEN_BATCHES", "3h"),
        ("RETENTION_MAX_REPLICATION_LAG", "-5s"),
        ("RETENTION_MAX_REPLICATION_LAG", "400d"),
    ],
)
def test_a_bad_pacing_value_exits_2_naming_the_key_and_touches_nothing(
    conn: psycopg.Connection, database: str, variable: str, value: str
):
    old = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=40))
    result = run_cli("run", database=database, env={variable: value})
    assert result.returncode == 2, (result.stdout, result.stderr)
    key = variable.removeprefix("RETENTION_").lower()
    assert key in result.stderr
    assert variable in result.stderr
    assert old in job_ids(conn)
    assert ledger_runs(conn) == []


def test_a_paced_run_reports_its_pauses(conn: psycopg.Connection, database: str):
    for _ in range(3):
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=40))
    env = {"RETENTION_PAUSE_BETWEEN_BATCHES": "10ms", "RETENTION_BATCH_SIZE": "1"}
    shown = run_cli("config", database=database, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "pause_between_batches" in shown.stdout
    done = run_cli("run", "--json", database=database, env=env)
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)["jobs"]
    assert jobs["deleted"] == 3
    assert jobs["pacing"]["pauses"] == jobs["batches"] - 1 >= 3
