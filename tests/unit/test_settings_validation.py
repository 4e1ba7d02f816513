"""Every bad setting is refused when the settings load: a ConfigError (exit 2) naming the key, the
range allowed and where the value came from, never an OverflowError or a wait without a timeout
later in a run; unknown RETENTION_* variables are refused; secrets are never echoed."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from retention import errors
from retention.config import durations, environment, fields
from retention.config import settings as settings_mod

TABLE = '[[tables]]\ntable = "events"\ntimestamp = "created_at"\n'
JOBS = '[jobs]\nsucceeded = "1d"\n'


def refused(tmp_path: Path, text: str) -> str:
    """The ConfigError's message for this TOML file (which must be refused)."""
    path = tmp_path / "retention.toml"
    path.write_text(text)
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load(path)
    assert caught.value.exit_code == 2
    return str(caught.value)


# Out of range: each is refused at load time, naming the key and the range allowed.
OUT_OF_RANGE = [
    (TABLE + 'age = "999999999d"\n', "tables.0.age", "100 years"),
    (TABLE + 'age = "36501d"\n', "tables.0.age", "100 years"),
    ("retention_days = 1000000\n", "retention_days", "1 to 36500"),
    ("log_retention_days = 36501\n", "log_retention_days", "1 to 36500"),
    ("log_retention_days = -1\n", "log_retention_days", "1 to 36500"),
    ('[jobs]\nsucceeded = "99999999999d"\n', "jobs.succeeded", "100 years"),
    ('[jobs]\nsucceeded = "999999999d"\n', "jobs.succeeded", "100 years"),
    ("[jobs]\nsucceeded = 1e30\n", "jobs.succeeded", "100 years"),
    ("[jobs]\nfailed = inf\n", "jobs.failed", "100 years"),
    ("[jobs]\nfailed = -inf\n", "jobs.failed", "longer than zero"),
    ("[jobs]\ncancelled = nan\n", "jobs.cancelled", "not a duration"),
    ("[jobs]\naborted = -5\n", "jobs.aborted", "longer than zero"),
    ('[jobs]\naborted = "-1d"\n', "jobs.aborted", "longer than zero"),
    ('[jobs]\nsucceeded = "P99999999999D"\n', "jobs.succeeded", "too long"),
    ('[[jobs.rules]]\nqueue = "q"\nfailed = "36501d"\n', "jobs.rules.0.failed", "100 years"),
    ("[orphans]\ngrace = 1e300\n", "orphans.grace", "100 years"),
    ("max_batch_seconds = inf\n", "max_batch_seconds", "at most 3600"),
    ("max_batch_seconds = nan\n", "max_batch_seconds", "at most 3600"),
    ("max_batch_seconds = 3601\n", "max_batch_seconds", "at most 3600"),
    ("max_run_seconds = inf\n", "max_run_seconds", "at most 604800"),
    ("max_run_seconds = nan\n", "max_run_seconds", "at most 604800"),
    ("max_run_seconds = 1e30\n", "max_run_seconds", "at most 604800"),
    ("batch_size = 1000001\n", "batch_size", "1 to 1000000"),
    ("batch_size = true\n", "batch_size", "not a number"),
    ("max_run_seconds = false\n", "max_run_seconds", "not a number"),
    ('lock_timeout = "25d"\n', "lock_timeout", "shorter than max_batch_seconds"),
    ('lock_timeout = "25d"\nmax_batch_seconds = 1e10\n', "lock_timeout", "too long"),
    ('lock_timeout = "0.5ms"\n', "lock_timeout", "at least 1ms"),
    ("lock_timeout = 0.0004\n", "lock_timeout", "at least 1ms"),
    ('lock_timeout = "PT0.0009S"\n', "lock_timeout", "at least 1ms"),
]


@pytest.mark.parametrize(("text", "key", "allowed"), OUT_OF_RANGE)
def test_a_value_out_of_range_is_refused_at_load_time(tmp_path, text, key, allowed):
    message = refused(tmp_path, text)
    assert f"  - {key}: " in message, message
    assert allowed in message, message
    assert str(tmp_path / "retention.toml") in message


def test_a_directory_age_is_bounded(tmp_path):
    root = tmp_path / "exports"
    root.mkdir()
    message = refused(tmp_path, f'[[directories]]\nroot = "{root}"\nage = "40000d"\n')
    assert "directories.0.age" in message
    assert "100 years" in message


@pytest.mark.parametrize(
    "text",
    [
        TABLE + 'age = "36500d"\n',
        "retention_days = 36500\nlog_retention_days = 36500\n",
        '[jobs]\nsucceeded = "36500d"\nfailed = 3153600000\n',
        "max_batch_seconds = 3600\nmax_run_seconds = 604800\nbatch_size = 1000000\n",
        'lock_timeout = "1ms"\n',
        'lock_timeout = "3599s"\nmax_batch_seconds = 3600\n',
    ],
)
def test_the_bounds_themselves_are_accepted(tmp_path, text):
    path = tmp_path / "retention.toml"
    path.write_text(text)
    settings_mod.load(path)


def test_the_table_age_of_the_largest_retention_days_can_be_subtracted_from_now(tmp_path):
    path = tmp_path / "retention.toml"
    path.write_text("retention_days = 36500\n" + TABLE)
    loaded = settings_mod.load(path)
    assert dt.datetime.now(dt.UTC) - loaded.table_age(loaded.tables[0]) > dt.datetime(
        1, 1, 1, tzinfo=dt.UTC
    )


def test_a_lock_timeout_below_a_millisecond_is_refused_when_built_directly():
    with pytest.raises(ValidationError, match="at least 1ms"):
        settings_mod.Settings(lock_timeout=dt.timedelta(microseconds=500))


# NUL characters: PostgreSQL cannot hold them, a file path cannot either.
NUL = "\\u0000"
NUL_VALUES = [
    (f'queue = "retention{NUL}"\n', "queue"),
    (f'[[tables]]\ntable = "ev{NUL}ents"\ntimestamp = "created_at"\n', "tables.0.table"),
    (f'[[tables]]\ntable = "events"\ntimestamp = "created{NUL}"\n', "tables.0.timestamp"),
    (TABLE + f'key = "i{NUL}d"\n', "tables.0.key"),
    (TABLE + f'where = {{kind = "a{NUL}b"}}\n', "tables.0.where"),
    (TABLE + f'where = {{kind = ["ok", "a{NUL}b"]}}\n', "tables.0.where"),
    (TABLE + f'where = {{"ki{NUL}nd" = "a"}}\n', "tables.0.where"),
    (
        TABLE + f'[[tables.children]]\ntable = "c"\ncolumn = "ev{NUL}"\n',
        "tables.0.children.0.column",
    ),
    (f'[[jobs.rules]]\nqueue = "q{NUL}"\nsucceeded = "1d"\n', "jobs.rules.0.queue"),
    (f'[[jobs.rules]]\ntask = "t{NUL}*"\nsucceeded = "1d"\n', "jobs.rules.0.task"),
]


@pytest.mark.parametrize(("text", "key"), NUL_VALUES)
def test_a_nul_character_is_refused_naming_the_key(tmp_path, text, key):
    message = refused(tmp_path, text)
    assert f"  - {key}: " in message, message
    assert "NUL" in message


@pytest.mark.parametrize(
    ("value", "allowed"),
    [("inf", "finite"), ("nan", "finite"), ("9223372036854775808", "64-bit")],
)
def test_a_where_number_postgresql_cannot_compare_is_refused(tmp_path, value, allowed):
    message = refused(tmp_path, TABLE + f"where = {{priority = {value}}}\n")
    assert "tables.0.where" in message
    assert allowed in message


# Unknown environment variables.


@pytest.mark.parametrize(
    ("variable", "closest"),
    [
        ("RETENTION_BACTH_SIZE", "RETENTION_BATCH_SIZE"),
        ("RETENTION_LOCK_TIMEOUTS", "RETENTION_LOCK_TIMEOUT"),
        ("RETENTION_JOBS__SUCEEDED", "RETENTION_JOBS__SUCCEEDED"),
        ("RETENTION_ORPHANS__GRCE", "RETENTION_ORPHANS__GRACE"),
        ("RETENTION_DATABASE_URL", "DATABASE_URL"),
        ("RETENTION_RETENTION_DAYS", "RETENTION_DAYS"),
        ("RETENTION_LOG_RETENTION_DAYS", "LOG_RETENTION_DAYS"),
        ("retention_bacth_size", "RETENTION_BATCH_SIZE"),
    ],
)
def test_an_unknown_retention_variable_is_refused_with_the_closest_name(
    monkeypatch, variable, closest
):
    monkeypatch.setenv(variable, "10")
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load()
    message = str(caught.value)
    assert caught.value.exit_code == 2
    assert f"environment variable {variable}" in message
    assert f"did you mean {closest}?" in message


@pytest.mark.parametrize(
    "variable", ["RETENTION_JOBS__RUNNING", "RETENTION_BATCH_SIZE__MAX", "RETENTION_JOBS__RULES__0"]
)
def test_a_nested_variable_is_checked_against_the_nested_fields(monkeypatch, variable):
    monkeypatch.setenv(variable, "1d")
    with pytest.raises(errors.ConfigError, match=variable):
        settings_mod.load()


def test_an_unknown_variable_is_refused_even_when_the_settings_are_built_directly(monkeypatch):
    monkeypatch.setenv("RETENTION_SHEDULE", "* * * * *")
    with pytest.raises(errors.ConfigError, match="did you mean RETENTION_SCHEDULE"):
        settings_mod.Settings()


def test_the_value_of_an_unknown_variable_is_never_shown(monkeypatch):
    monkeypatch.setenv("RETENTION_DATABSE_URL", "postgresql://app:Hunter2Pw@db/app")
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load()
    assert "RETENTION_DATABSE_URL" in str(caught.value)
    assert "Hunter2Pw" not in str(caught.value)


def test_every_setting_variable_and_our_own_variables_are_accepted(monkeypatch, tmp_path):
    config = tmp_path / "retention.toml"
    config.write_text("")
    valid = {
        "RETENTION_CONFIG": str(config),
        "RETENTION_HOME": str(tmp_path / "home"),
        "RETENTION_BATCH_SIZE": "10",
        "RETENTION_DAYS": "12",
        "LOG_RETENTION_DAYS": "3",
        "RETENTION_LOCK_TIMEOUT": "100ms",
        "RETENTION_JOBS__SUCCEEDED": "2d",
        "RETENTION_JOBS__RULES": '[{"queue": "q", "failed": "1h"}]',
        "RETENTION_ORPHANS__GRACE": "2h",
        "retention_queue": "lower-case",
    }
    for name, value in valid.items():
        monkeypatch.setenv(name, value)
    loaded = settings_mod.load()
    assert loaded.batch_size == 10
    assert loaded.jobs.succeeded == dt.timedelta(days=2)
    assert loaded.queue == "lower-case"
    assert {"RETENTION_CONFIG", "RETENTION_HOME"} <= environment.NON_SETTING_VARIABLES
    names = environment.names(settings_mod.Settings)
    for name in ("RETENTION_SCHEDULE", "RETENTION_JOBS__ABORTED", "RETENTION_ORPHANS__ENABLED"):
        assert name in names


# Where the bad value came from.


def test_a_bad_environment_variable_is_not_blamed_on_the_toml_file(monkeypatch, tmp_path):
    config = tmp_path / "retention.toml"
    config.write_text('queue = "from-file"\n')
    monkeypatch.setenv("RETENTION_BATCH_SIZE", "0")
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load(config)
    message = str(caught.value)
    assert "batch_size" in message
    assert "from environment variable RETENTION_BATCH_SIZE" in message
    assert str(config) not in message


def test_each_problem_names_its_own_source(monkeypatch, tmp_path):
    config = tmp_path / "retention.toml"
    config.write_text('retention_days = 0\n[jobs]\nfailed = "0d"\n')
    monkeypatch.setenv("RETENTION_JOBS__SUCCEEDED", "3x")
    monkeypatch.setenv("LOG_RETENTION_DAYS", "0")
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load(config, batch_size=0)
    lines = {line.split(":")[0].strip(" -"): line for line in str(caught.value).splitlines()[1:]}
    assert "from environment variable RETENTION_JOBS__SUCCEEDED" in lines["jobs.succeeded"]
    assert "from environment variable LOG_RETENTION_DAYS" in lines["log_retention_days"]
    assert f"from the file {config}" in lines["jobs.failed"]
    assert f"from the file {config}" in lines["retention_days"]
    assert "from an argument" in lines["batch_size"]


def test_a_list_given_as_json_in_the_environment_is_blamed_on_its_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("RETENTION_TABLES", '[{"table": "t", "timestamp": "ts", "age": "99999d"}]')
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load()
    assert "tables.0.age" in str(caught.value)
    assert "from environment variable RETENTION_TABLES" in str(caught.value)
    monkeypatch.setenv("RETENTION_TABLES", "[{not json")
    with pytest.raises(errors.ConfigError, match="environment variable RETENTION_TABLES"):
        settings_mod.load()


def test_a_bad_default_combination_says_it_is_the_default(monkeypatch):
    monkeypatch.setenv("RETENTION_MAX_BATCH_SECONDS", "0.1")
    with pytest.raises(errors.ConfigError) as caught:
        settings_mod.load()
    assert "lock_timeout" in str(caught.value)
    assert "from the default" in str(caught.value)


# Secrets are never echoed.
SECRET = "Pw4Leak9"
SECRET_KEYS = [
    f'databse_url = "postgresql://app:{SECRET}@db/app"\n',
    f'database_uri = "host=db password={SECRET}"\n',
    f'my_password = "{SECRET}"\n',
    f'api_token = "{SECRET}"\n',
    f'[database]\nurl = "postgresql://app:{SECRET}@db/app"\n',
    f'[jobs]\ndsn = "host=db password={SECRET}"\n',
    f'[[tables]]\ntable = "t"\ntimestamp = "ts"\nsecret = "{SECRET}"\n',
    f'misc = "postgres://app:{SECRET}@db/app"\n',
]


@pytest.mark.parametrize("text", SECRET_KEYS)
def test_an_unknown_key_holding_a_secret_is_named_but_its_value_hidden(tmp_path, text):
    message = refused(tmp_path, text)
    assert "unknown key" in message
    assert "(value hidden)" in message
    assert SECRET not in message


def test_a_misspelled_database_url_is_told_its_right_name(tmp_path):
    message = refused(tmp_path, f'databse_url = "postgresql://app:{SECRET}@db/app"\n')
    assert "did you mean database_url?" in message


@pytest.mark.parametrize(
    "text",
    [
        f'schedule = "postgresql://app:{SECRET}@db/app"\n',
        f'batch_size = "host=db password={SECRET}"\n',
        "database_url = 5\n",
    ],
)
def test_a_known_key_given_a_connection_string_by_mistake_does_not_echo_it(tmp_path, text):
    message = refused(tmp_path, text)
    assert SECRET not in message
    assert "5)" not in message


def test_an_unknown_key_with_a_harmless_value_still_shows_it(tmp_path):
    assert "got tpyo = 17" in refused(tmp_path, "tpyo = 17\n")


# The durations themselves, whatever is written.


@given(
    st.one_of(
        st.text(max_size=30),
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.builds(lambda n, u: f"{n}{u}", st.integers(0, 10**25), st.sampled_from(list("wdhms"))),
    )
)
@settings(max_examples=300, deadline=None)
def test_parse_duration_gives_a_bounded_duration_or_a_value_error(value):
    try:
        parsed = durations.parse_duration(value)
    except ValueError:
        return
    assert dt.timedelta(0) < parsed <= durations.MAX_DURATION
    dt.datetime.now(dt.UTC) - parsed  # never overflows


@given(st.floats(allow_nan=True, allow_infinity=True))
@settings(max_examples=200, deadline=None)
def test_any_number_of_seconds_is_accepted_only_when_finite_and_in_range(value):
    try:
        loaded = settings_mod.Settings(max_run_seconds=value)
    except ValidationError:
        assert not (math.isfinite(value) and 0 < value <= fields.MAX_RUN_SECONDS)
        return
    assert 0 < loaded.max_run_seconds <= fields.MAX_RUN_SECONDS


# PostgreSQL timeouts: whole milliseconds, never 0.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.timedelta(microseconds=1), 1),
        (dt.timedelta(microseconds=500), 1),
        (dt.timedelta(milliseconds=1), 1),
        (dt.timedelta(microseconds=1001), 2),
        (dt.timedelta(milliseconds=200), 200),
        (dt.timedelta(seconds=1.1), 1100),
        (dt.timedelta(hours=1), 3_600_000),
    ],
)
def test_to_milliseconds_rounds_up_and_never_gives_zero(value, expected):
    assert durations.to_milliseconds(value) == expected


@pytest.mark.parametrize(
    "value", [dt.timedelta(0), dt.timedelta(milliseconds=-5), dt.timedelta(days=25)]
)
def test_to_milliseconds_refuses_what_postgresql_would_not_bound(value):
    with pytest.raises(ValueError, match="a timeout of"):
        durations.to_milliseconds(value)


@given(st.timedeltas(min_value=dt.timedelta(microseconds=1), max_value=dt.timedelta(days=24)))
def test_to_milliseconds_is_the_smallest_whole_millisecond_count_at_least_the_duration(value):
    ms = durations.to_milliseconds(value)
    assert ms >= 1
    assert dt.timedelta(milliseconds=ms) >= value > dt.timedelta(milliseconds=ms - 1)


def test_every_accepted_lock_timeout_is_a_bounded_wait_in_postgresql(tmp_path):
    for text in ("1ms", "1.5ms", "200ms", "0.999s"):
        path = tmp_path / "retention.toml"
        path.write_text(f'lock_timeout = "{text}"\n')
        assert durations.to_milliseconds(settings_mod.load(path).lock_timeout) >= 1
