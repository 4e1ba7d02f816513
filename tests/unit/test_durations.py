"""Durations and points in time as users write them: parsing, its limits and messages, and the
short form shown back (to_milliseconds is in test_settings_validation.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retention.config import durations

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5h", dt.timedelta(minutes=90)),
        ("0.5s", dt.timedelta(milliseconds=500)),
        ("30D", dt.timedelta(days=30)),
        ("250MS", dt.timedelta(milliseconds=250)),
        (" 30 d ", dt.timedelta(days=30)),
        ("36500d", durations.MAX_DURATION),
        ("PT0.5S", dt.timedelta(milliseconds=500)),
        ("PT1.5H", dt.timedelta(minutes=90)),
        (" P7D ", dt.timedelta(days=7)),
        (90, dt.timedelta(seconds=90)),
        (1.5, dt.timedelta(seconds=1.5)),
        (dt.timedelta(hours=2), dt.timedelta(hours=2)),
    ],
)
def test_units_cases_decimals_spaces_numbers_and_timedeltas(text, expected):
    assert durations.parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("-1d", "must be longer than zero"),
        ("  -1d", "must be longer than zero"),
        ("PT0S", "must be longer than zero"),
        (0, "must be longer than zero"),
        (-5, "must be longer than zero"),
        (dt.timedelta(0), "must be longer than zero"),
        (dt.timedelta(days=-1), "must be longer than zero"),
        ("36501d", "too long"),
        ("P36501D", "too long"),
        ("P100000000D", "too long"),
        (float("inf"), "too long"),
        (dt.timedelta(days=36501), "too long"),
        ("1e3s", "not a duration"),
        ("30dd", "not a duration"),
        ("3 0d", "not a duration"),
        ("d30", "not a duration"),
        ("30 days", "not a duration"),
        ("P-1D", "not a duration"),
        (True, "not a duration"),
        (None, "not a duration"),
        ([1], "not a duration"),
        (float("nan"), "not a duration"),
    ],
)
def test_what_is_refused_is_a_value_error_naming_the_value(value, says):
    with pytest.raises(ValueError, match=says) as caught:
        durations.parse_duration(value)
    assert repr(value) in str(caught.value)


def test_a_value_that_is_not_a_duration_says_how_to_write_one():
    with pytest.raises(ValueError, match=r"30d, 72h, 15m, 90s\) or ISO 8601 \(P30D, PT72H\)"):
        durations.parse_duration("soon")


@given(
    st.integers(min_value=1, max_value=durations.MAX_DAYS),
    st.sampled_from([("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]),
)
def test_a_whole_number_of_any_unit_is_that_many_units(number, unit):
    name, seconds = unit
    expected = dt.timedelta(seconds=number * seconds)
    if expected <= durations.MAX_DURATION:
        assert durations.parse_duration(f"{number}{name}") == expected
    else:
        with pytest.raises(ValueError, match="too long"):
            durations.parse_duration(f"{number}{name}")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (dt.timedelta(days=3), "3d"),
        (dt.timedelta(hours=36), "36h"),
        (dt.timedelta(minutes=90), "90m"),
        (dt.timedelta(seconds=90), "90s"),
        (dt.timedelta(milliseconds=250), "250ms"),
        (dt.timedelta(seconds=1.5), "1.5s"),
        (None, "forever"),
    ],
)
def test_format_shows_the_largest_whole_unit(value, shown):
    assert durations.format_duration(value) == shown


@given(st.integers(min_value=1, max_value=999_999))
def test_what_format_shows_parses_back_to_the_same_duration(seconds):
    value = dt.timedelta(seconds=seconds)
    assert durations.parse_duration(durations.format_duration(value)) == value


@given(st.integers(min_value=1_000_000, max_value=int(durations.MAX_DURATION.total_seconds())))
def test_what_format_shows_of_long_durations_parses_back_too(seconds):
    value = dt.timedelta(seconds=seconds)
    assert durations.parse_duration(durations.format_duration(value)) == value


@pytest.mark.parametrize("seconds", [1_000_000, 1_234_567])
def test_a_long_duration_is_shown_as_its_own_value(seconds):
    assert durations.format_duration(dt.timedelta(seconds=seconds)) == f"{seconds}s"


@given(st.integers(min_value=1, max_value=999))
def test_milliseconds_format_and_parse_back(milliseconds):
    value = dt.timedelta(milliseconds=milliseconds)
    assert durations.parse_duration(durations.format_duration(value)) == value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW - dt.timedelta(days=30)),
        ("PT72H", NOW - dt.timedelta(hours=72)),
        ("2026-01-31", dt.datetime(2026, 1, 31, tzinfo=dt.UTC)),
        ("2026-01-31T12:30:00", dt.datetime(2026, 1, 31, 12, 30, tzinfo=dt.UTC)),
        (
            "2026-01-31T12:30:00+02:00",
            dt.datetime(2026, 1, 31, 10, 30, tzinfo=dt.UTC),
        ),
    ],
)
def test_when_is_a_duration_ago_or_a_timestamp_utc_unless_zoned(text, expected):
    moment = durations.parse_when(text, NOW)
    assert moment == expected
    assert moment.tzinfo is not None


@pytest.mark.parametrize("text", ["last tuesday", "0d", "36501d", "2026-13-01"])
def test_when_refuses_what_is_neither(text):
    with pytest.raises(ValueError, match="neither a timestamp"):
        durations.parse_when(text, NOW)
