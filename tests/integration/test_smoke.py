"""The smallest run: old finished jobs go, the rest stays."""

from __future__ import annotations

import datetime as dt

from retention.run import runner
from tests.helpers import job_ids, make_settings, seed_job


def test_run_deletes_old_finished_jobs_and_keeps_the_rest(conn, database, location):
    old = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
    fresh = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(hours=1))
    todo = seed_job(conn, status="todo", finished_ago=dt.timedelta(days=99))
    settings = make_settings(database)
    summary = runner.execute(
        settings, location, stages=["jobs"], dry_run=False, trigger="cli"
    ).to_json()
    assert summary["jobs"]["deleted"] == 1
    assert job_ids(conn) == {fresh, todo}
    assert old not in job_ids(conn)
