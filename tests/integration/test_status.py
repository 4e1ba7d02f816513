"""The job backlog follows the rules as the prune does."""

from __future__ import annotations

import datetime as dt

from retention.run import backlog, runner
from tests.helpers import make_settings, seed_job


def test_job_backlog_follows_rules_like_the_prune_does(conn, database, location):
    settings = make_settings(
        database,
        jobs={"succeeded": "1d", "rules": [{"queue": "keep*", "succeeded": "30d"}]},
    )
    seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=3), queue="keep-me")
    seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=3), queue="other")
    now = conn.execute("SELECT now()").fetchone()[0]
    before = backlog.job_backlog(conn, settings.jobs, now)["succeeded"]["eligible"]
    summary = runner.execute(
        settings, location, stages=["jobs"], dry_run=False, trigger="cli"
    ).to_json()
    assert before == summary["jobs"]["deleted"] == 1
    now = conn.execute("SELECT now()").fetchone()[0]
    assert backlog.job_backlog(conn, settings.jobs, now)["succeeded"]["eligible"] == 0
