"""The [jobs] section: defaults, rule precedence, the environment over the file."""

from __future__ import annotations

import datetime as dt

import pytest

from retention import errors
from retention.config import policies
from retention.config import settings as settings_mod
from tests.helpers import write_toml as write

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def test_defaults_without_a_jobs_section(tmp_path):
    policy = settings_mod.load(write(tmp_path, 'schedule = "0 4 * * *"\n')).jobs
    assert {s: policy.age_for(s, "q", "t") for s in policies.FINAL_STATUSES} == {
        "succeeded": 3 * DAY,
        "failed": 30 * DAY,
        "cancelled": 7 * DAY,
        "aborted": 7 * DAY,
    }
    assert policy.schedule is None
    assert policy.rules == []


def test_the_issue_example_and_rule_precedence(tmp_path):
    path = write(
        tmp_path,
        """
        [jobs]
        schedule = "*/10 * * * *"
        succeeded = "3d"
        failed = "30d"
        cancelled = "7d"
        [[jobs.rules]]
        queue = "emails"
        task = "app.send_*"
        succeeded = "1h"
        [[jobs.rules]]
        queue = "emails*"
        failed = "forever"
        [[jobs.rules]]
        task = "app.send_sms"
        succeeded = "2h"
        """,
    )
    policy = settings_mod.load(path).jobs
    assert policy.schedule == "*/10 * * * *"
    assert policy.age_for("succeeded", "emails", "app.send_mail") == HOUR
    assert policy.age_for("succeeded", "emails", "app.send_sms") == 2 * HOUR
    assert policy.age_for("succeeded", "emails_bulk", "app.send_mail") == 3 * DAY
    assert policy.age_for("succeeded", "default", "app.send_sms") == 2 * HOUR
    assert policy.age_for("failed", "emails", "app.send_mail") is None
    assert policy.age_for("failed", "default", "app.send_mail") == 30 * DAY
    assert policy.age_for("cancelled", "emails", "app.send_mail") == 7 * DAY
    assert policy.age_for("aborted", "emails", "app.send_mail") is None


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, '[jobs]\nsucceeded = "3d"\n')
    monkeypatch.setenv("RETENTION_JOBS__SUCCEEDED", "12h")
    assert settings_mod.load(path).jobs.succeeded == 12 * HOUR


def test_load_raises_config_error(tmp_path):
    with pytest.raises(errors.ConfigError, match=r"jobs\.rules\.0\.task: glob '\[abc'"):
        settings_mod.load(write(tmp_path, '[[jobs.rules]]\ntask = "[abc"\nfailed = "1d"\n'))
