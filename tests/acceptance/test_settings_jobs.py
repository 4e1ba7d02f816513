"""Bad [jobs] settings refused by the real CLI with exit 2, and a good one applied."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.helpers import job_ids, run_cli, seed_job
from tests.helpers import write_toml as write

HOUR = dt.timedelta(hours=1)


DAY = dt.timedelta(days=1)


BAD = [
    ('[jobs]\ntodo = "1d"\n', ["jobs.todo", "'1d'", "todo and doing jobs are never deleted"]),
    ('[jobs]\nrunning = "1d"\n', ["jobs.running", "unknown key", "succeeded, failed"]),
    (
        '[[jobs.rules]]\nqueue = "emails"\nsucseeded = "1h"\n',
        ["jobs.rules.0.sucseeded", "unknown key", "'1h'"],
    ),
    (
        '[[jobs.rules]]\nqueue = "emails"\ndoing = "1h"\n',
        ["jobs.rules.0.doing", "never deleted"],
    ),
    (
        '[[jobs.rules]]\ntask = "[abc"\nsucceeded = "1h"\n',
        ["jobs.rules.0.task", "'[abc'", "unclosed '['"],
    ),
    ('[[jobs.rules]]\nqueue = ""\nsucceeded = "1h"\n', ["jobs.rules.0.queue", "not a glob"]),
    ('[jobs]\nsucceeded = "3x"\n', ["jobs.succeeded", "'3x'", "not a duration", "30d"]),
    ('[jobs]\nfailed = "0d"\n', ["jobs.failed", "'0d'", "longer than zero"]),
    ('[jobs]\ncancelled = "-1d"\n', ["jobs.cancelled", "'-1d'"]),
    ("[jobs]\naborted = true\n", ["jobs.aborted", "True", "not a duration"]),
    (
        '[[jobs.rules]]\nqueue = "emails"\nsucceeded = "1h"\n'
        '[[jobs.rules]]\ntask = "x"\ncancelled = "soon"\n',
        ["jobs.rules.1.cancelled", "'soon'"],
    ),
    ('[jobs]\nschedule = "every day"\n', ["jobs.schedule", "'every day'", "cron"]),
    ('[jobs]\nschedule = "61 * * * *"\n', ["jobs.schedule", "'61 * * * *'", "cron"]),
    ('[[jobs.rules]]\nsucceeded = "1h"\n', ["jobs.rules.0", "`queue` and/or `task`"]),
    ('[[jobs.rules]]\nqueue = "emails"\n', ["jobs.rules.0", "at least one age"]),
    ('[jobs]\nrules = "emails"\n', ["jobs.rules", "'emails'"]),
    (
        '[jobs]\nsucceeded = "3x"\nfailed = "0d"\n',
        ["jobs.succeeded", "'3x'", "jobs.failed", "'0d'"],
    ),
]


@pytest.mark.parametrize(("body", "expected"), BAD, ids=[b.replace("\n", " ") for b, _ in BAD])
def test_bad_jobs_settings_are_refused_with_exit_2(conn, database, tmp_path, body, expected):
    old = seed_job(conn, status="succeeded", finished_ago=30 * DAY)
    config = write(tmp_path, body)
    for command in (("run", "--only", "jobs"), ("plan",)):
        result = run_cli("--config", str(config), *command, database=database)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert str(config) in result.stderr
        for fragment in expected:
            assert fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert job_ids(conn) == {old}
    assert conn.execute("SELECT count(*) FROM retention_runs").fetchone() == (0,)


def test_a_bad_age_in_the_environment_is_refused(conn, database):
    old = seed_job(conn, status="succeeded", finished_ago=30 * DAY)
    result = run_cli(
        "run", "--only", "jobs", database=database, env={"RETENTION_JOBS__FAILED": "3x"}
    )
    assert result.returncode == 2
    assert "jobs.failed" in result.stderr
    assert "'3x'" in result.stderr
    assert job_ids(conn) == {old}


def test_a_good_config_runs_through_the_cli(conn, database, tmp_path):
    config = write(
        tmp_path,
        """
        [jobs]
        succeeded = "1d"
        [[jobs.rules]]
        queue = "keep*"
        succeeded = "forever"
        """,
    )
    gone = seed_job(conn, status="succeeded", finished_ago=2 * DAY)
    kept = seed_job(conn, status="succeeded", finished_ago=200 * DAY, queue="keep_me")
    failed = seed_job(conn, status="failed", finished_ago=200 * DAY)
    result = run_cli("--config", str(config), "run", "--only", "jobs", database=database)
    assert result.returncode == 0, result.stderr
    assert job_ids(conn) == {kept, failed}
    assert gone not in job_ids(conn)
