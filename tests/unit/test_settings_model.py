"""The settings model without a database: its defaults and what a run records of them, values
refused by type or kind (bounds, secrets and sources are in test_settings_validation.py), unknown
and missing keys of nested tables, table filters and ages, a file that is not TOML."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from retention import errors
from retention.config import policies
from retention.config import settings as settings_mod
from tests.helpers import write_toml


def refused(tmp_path: Path, body: str) -> str:
    """The message of the ConfigError that loading `body` as retention.toml raises."""
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load(write_toml(tmp_path, body))
    return str(caught.value)


def test_the_defaults():
    settings = settings_mod.load()
    assert settings.database_url is None
    assert settings.home is None
    assert settings.batch_size == 5000
    assert settings.max_batch_seconds == 1.0
    assert settings.max_run_seconds == 600.0
    assert settings.lock_timeout == dt.timedelta(milliseconds=200)
    assert settings.tables == []
    assert settings.directories == []
    assert settings.orphans.enabled is False
    assert settings.orphans.grace == dt.timedelta(hours=1)
    assert settings.jobs.enabled is True
    assert settings.jobs.rules == []


def test_what_a_run_records_shows_durations_as_written_and_hides_the_password():
    settings = settings_mod.Settings(database_url="postgresql://app:s3cret@db:5432/app")
    public = settings.public()
    assert "s3cret" not in repr(public)
    assert public["database_url"] == "postgresql://app:***@db:5432/app"
    assert public["lock_timeout"] == "200ms"
    assert public["orphans"]["grace"] == "1h"
    assert {status: public["jobs"][status] for status in policies.FINAL_STATUSES} == {
        "succeeded": "3d",
        "failed": "30d",
        "cancelled": "7d",
        "aborted": "7d",
    }


@pytest.mark.parametrize(
    ("body", "key", "says"),
    [
        ('batch_size = "many"\n', "batch_size", "'many'"),
        ("batch_size = 2.5\n", "batch_size", "2.5"),
        ('lock_timeout = "500us"\n', "lock_timeout", "500us"),
        ('delete_jobs = "sometimes"\n', "delete_jobs", "sometimes"),
        ('queue = ""\n', "queue", "not a valid SQL identifier"),
        ('schedule = "0 3 * *"\n', "schedule", "not a valid cron"),
        ("[orphans]\ngrace = 0\n", "orphans.grace", "longer than zero"),
        ('[orphans]\nenabled = "sometimes"\n', "orphans.enabled", "'sometimes'"),
        ("[jobs]\nrules = [1]\n", "jobs.rules.0", "JobRule"),
    ],
)
def test_bad_values_are_refused_naming_the_key(tmp_path, body, key, says):
    message = refused(tmp_path, body)
    assert f"{key}:" in message, message
    assert says in message, message


def test_every_bad_key_is_named_at_once(tmp_path):
    message = refused(tmp_path, 'batch_size = 0\nqueue = ""\n[jobs]\nfailed = "3x"\n')
    assert len(message.splitlines()) == 4, message
    for key in ("batch_size", "queue", "jobs.failed"):
        assert f"{key}:" in message, message


@pytest.mark.parametrize(
    ("body", "key", "hint"),
    [
        ("tpyo = 1\n", "tpyo", ""),
        ("batchsize = 10\n", "batchsize", "batch_size"),
        ("[orphans]\nenable = true\n", "orphans.enable", "enabled"),
        (
            '[[tables]]\ntable = "t"\ntimestamp = "at"\nchildern = []\n',
            "tables.0.childern",
            "children",
        ),
        (
            '[[directories]]\nroot = "/srv/x"\nage = "1d"\nexclud = []\n',
            "directories.0.exclud",
            "exclude",
        ),
    ],
)
def test_unknown_keys_are_refused_with_the_closest_name(tmp_path, body, key, hint):
    message = refused(tmp_path, body)
    assert f"{key}: unknown key" in message, message
    assert hint in message, message


def test_a_missing_required_key_is_named(tmp_path):
    message = refused(tmp_path, '[[tables]]\ntable = "app.events"\n')
    assert "tables.0.timestamp:" in message, message


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("{kind = []}", "empty list"),
        ("{kind = {nested = 1}}", "not a plain value"),
        ("{level = nan}", "not a finite number"),
    ],
)
def test_table_filters_must_be_plain_values(tmp_path, where, says):
    message = refused(tmp_path, f'[[tables]]\ntable = "t"\ntimestamp = "at"\nwhere = {where}\n')
    assert "tables.0.where:" in message, message
    assert says in message, message


def test_table_ages_follow_the_knobs_or_their_own_duration():
    settings = settings_mod.Settings(
        retention_days=10,
        log_retention_days=2,
        tables=[
            {"table": "a", "timestamp": "at"},
            {"table": "b", "timestamp": "at", "age": "retention_days"},
            {"table": "c", "timestamp": "at", "age": "log_retention_days"},
            {"table": "d", "timestamp": "at", "age": "12h"},
        ],
    )
    assert [settings.table_age(policy) for policy in settings.tables] == [
        dt.timedelta(days=10),
        dt.timedelta(days=10),
        dt.timedelta(days=2),
        dt.timedelta(hours=12),
    ]


def test_a_table_age_that_is_not_a_duration_is_refused(tmp_path):
    message = refused(tmp_path, '[[tables]]\ntable = "t"\ntimestamp = "at"\nage = "soon"\n')
    assert "tables.0.age:" in message, message
    assert "soon" in message, message


def test_a_file_that_is_not_toml_is_a_config_error_naming_it(tmp_path):
    message = refused(tmp_path, "batch_size = = 3\n")
    assert str(tmp_path / "retention.toml") in message, message


def test_settings_are_frozen():
    settings = settings_mod.Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.batch_size = 1  # type: ignore[misc]
