"""Settings without a database: durations, globs, defaults, sources and their precedence, bad
values refused naming key and value, the README's configuration reference."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from retention import errors
from retention.config import durations, globs
from retention.config import settings as settings_mod
from tests.helpers import ROOT


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", dt.timedelta(days=30)),
        ("72h", dt.timedelta(hours=72)),
        ("15m", dt.timedelta(minutes=15)),
        ("90s", dt.timedelta(seconds=90)),
        ("2w", dt.timedelta(weeks=2)),
        ("250ms", dt.timedelta(milliseconds=250)),
        ("P30D", dt.timedelta(days=30)),
        ("PT72H", dt.timedelta(hours=72)),
        ("P1DT2H", dt.timedelta(days=1, hours=2)),
    ],
)
def test_durations_accept_short_forms_and_iso_8601(text, expected):
    assert durations.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["3x", "", "d", "0d", "-1d", "P0D", "soon", "1.5.2h"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match=f"^{re.escape(repr(text))} (is not a duration|must be)"):
        durations.parse_duration(text)


def test_globs_agree_with_fnmatch_semantics():
    assert globs.matches("app.send_*", "app.send_email")
    assert not globs.matches("app.send_*", "app.sender")
    assert globs.matches("q?", "q1")
    assert not globs.matches("q?", "q12")
    assert globs.matches("[ab]x", "bx")
    assert not globs.matches("[!ab]x", "bx")
    assert globs.matches("a.b", "a.b")
    assert not globs.matches("a.b", "aXb")
    with pytest.raises(ValueError, match="unclosed"):
        globs.to_regex("[abc")


def test_defaults_without_a_jobs_section():
    settings = settings_mod.load()
    assert settings.schedule == "0 3 * * *"
    assert settings.queue == "retention"
    assert settings.delete_jobs == "never"
    assert settings.retention_days == 30
    assert settings.log_retention_days == 7
    assert settings.jobs.succeeded == dt.timedelta(days=3)
    assert settings.jobs.failed == dt.timedelta(days=30)
    assert settings.jobs.cancelled == dt.timedelta(days=7)
    assert settings.jobs.aborted == dt.timedelta(days=7)


def test_a_status_left_out_of_the_jobs_section_is_kept_forever(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[jobs]\nsucceeded = "1d"\nfailed = "forever"\n')
    settings = settings_mod.load(path)
    assert settings.jobs.succeeded == dt.timedelta(days=1)
    assert settings.jobs.failed is None
    assert settings.jobs.cancelled is None
    assert settings.jobs.aborted is None


def test_environment_overrides_the_file_and_nests_with_double_underscore(tmp_path, monkeypatch):
    path = tmp_path / "r.toml"
    path.write_text('queue = "from-file"\nbatch_size = 10\n')
    monkeypatch.setenv("RETENTION_CONFIG", str(path))
    monkeypatch.setenv("RETENTION_BATCH_SIZE", "77")
    monkeypatch.setenv("RETENTION_DAYS", "12")
    monkeypatch.setenv("LOG_RETENTION_DAYS", "3")
    monkeypatch.setenv("RETENTION_ORPHANS__GRACE", "2h")
    settings = settings_mod.load()
    assert settings.queue == "from-file"
    assert settings.batch_size == 77
    assert settings.retention_days == 12
    assert settings.log_retention_days == 3
    assert settings.orphans.grace == dt.timedelta(hours=2)


def test_config_file_precedence(tmp_path, monkeypatch):
    (tmp_path / "retention.toml").write_text('queue = "cwd"\n')
    assert settings_mod.load().queue == "cwd"
    env_file = tmp_path / "env.toml"
    env_file.write_text('queue = "env"\n')
    monkeypatch.setenv("RETENTION_CONFIG", str(env_file))
    assert settings_mod.load().queue == "env"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('queue = "explicit"\n')
    assert settings_mod.load(explicit).queue == "explicit"
    with pytest.raises(errors.ConfigError, match="does not exist"):
        settings_mod.load(tmp_path / "missing.toml")


BAD_CONFIGS = [
    ('schedule = "every day"\n', "schedule", "every day"),
    ('schedule = "61 * * * *"\n', "schedule", "61 * * * *"),
    ("batch_size = 0\n", "batch_size", "0"),
    ("max_run_seconds = -5\n", "max_run_seconds", "-5"),
    ('delete_jobs = "sometimes"\n', "delete_jobs", "sometimes"),
    ("retention_days = 0\n", "retention_days", "0"),
    ("tpyo = 1\n", "tpyo", "unknown key"),
    ('[jobs]\nsucceeded = "3x"\n', "jobs.succeeded", "3x"),
    ('[jobs]\nfailed = "0d"\n', "jobs.failed", "0d"),
    ('[jobs]\nrunning = "1d"\n', "jobs.running", "unknown key"),
    ('[jobs]\nschedule = "* *"\n', "jobs.schedule", "* *"),
    ('[[jobs.rules]]\nqueue = "[ab"\nsucceeded = "1h"\n', "jobs.rules.0.queue", "[ab"),
    ('[[jobs.rules]]\nsucceeded = "1h"\n', "jobs.rules.0", "queue"),
    ('[[jobs.rules]]\nqueue = "q"\n', "jobs.rules.0", "at least one age"),
    ('lock_timeout = "2s"\n', "lock_timeout", "max_batch_seconds"),
]


@pytest.mark.parametrize(("text", "key", "value"), BAD_CONFIGS)
def test_bad_config_is_refused_naming_key_and_value(tmp_path, text, key, value):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load(path)
    message = str(caught.value)
    assert key in message
    assert value in message


def test_readme_configuration_reference_matches_the_model():
    from retention.config import reference

    readme = (ROOT / "README.md").read_text()
    assert reference.embedded_in(readme) == reference.markdown(), (
        "README's configuration reference is stale: paste the output of "
        "`retention config --reference` between its markers"
    )


def test_a_jobs_section_naming_no_status_keeps_the_default_ages(tmp_path, monkeypatch):
    path = tmp_path / "r.toml"
    path.write_text('[jobs]\nschedule = "*/10 * * * *"\n')
    settings = settings_mod.load(path)
    assert settings.jobs.schedule == "*/10 * * * *"
    assert settings.jobs.succeeded == dt.timedelta(days=3)
    assert settings.jobs.failed == dt.timedelta(days=30)
    monkeypatch.setenv("RETENTION_JOBS__SCHEDULE", "0 * * * *")
    assert settings_mod.load().jobs.aborted == dt.timedelta(days=7)
