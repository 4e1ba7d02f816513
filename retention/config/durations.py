"""Durations and timestamps as users write them: `30d`, `72h`, `15m`, `90s`, `2w`, ISO 8601.

Every duration is positive and at most `MAX_DURATION` (100 years): a longer one is a typo, and
would overflow when subtracted from now (in Python or in PostgreSQL) in the middle of a run.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from pydantic import TypeAdapter, ValidationError

MAX_DAYS = 36500
MAX_DURATION = dt.timedelta(days=MAX_DAYS)
MAX_DURATION_TEXT = f"100 years ({MAX_DAYS}d)"
ONE_MILLISECOND = dt.timedelta(milliseconds=1)
# The largest value PostgreSQL takes for lock_timeout / statement_timeout (an int of ms).
MAX_POSTGRES_TIMEOUT_MS = 2**31 - 1

_SHORT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(w|d|h|m|s|ms)\s*$", re.IGNORECASE)
_UNITS = {
    "w": dt.timedelta(weeks=1),
    "d": dt.timedelta(days=1),
    "h": dt.timedelta(hours=1),
    "m": dt.timedelta(minutes=1),
    "s": dt.timedelta(seconds=1),
    "ms": dt.timedelta(milliseconds=1),
}
_ISO = TypeAdapter(dt.timedelta)
_HELP = "use a number and a unit (30d, 72h, 15m, 90s) or ISO 8601 (P30D, PT72H)"


def _too_long(value: object) -> ValueError:
    return ValueError(
        f"{value!r} is too long: a duration is at most {MAX_DURATION_TEXT}; "
        "use a shorter one, or `forever` where a policy allows it"
    )


def _not_positive(value: object) -> ValueError:
    return ValueError(f"{value!r} must be longer than zero (e.g. 30d, 12h, 500ms)")


def _from_seconds(seconds: float, value: object) -> dt.timedelta:
    """A timedelta of `seconds`, refused before Python's own limits can overflow."""
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a duration: {_HELP}")
    if seconds <= 0:
        raise _not_positive(value)
    if seconds > MAX_DURATION.total_seconds():
        raise _too_long(value)
    return dt.timedelta(seconds=seconds)


def parse_duration(value: object) -> dt.timedelta:
    """Parse a duration, positive and at most 100 years; raise ValueError with a message a user
    can act on (never OverflowError or TypeError). A bare number is a number of seconds."""
    if isinstance(value, dt.timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: {_HELP}")
    elif isinstance(value, int | float):
        result = _from_seconds(float(value), value)
    elif isinstance(value, str) and value.strip().startswith("-"):
        raise _not_positive(value)
    elif isinstance(value, str):
        match = _SHORT.match(value)
        if match:
            unit = _UNITS[match.group(2).lower()].total_seconds()
            result = _from_seconds(float(match.group(1)) * unit, value)
        elif value.strip().upper().startswith("P"):
            try:
                result = _ISO.validate_python(value.strip())
            except (ValidationError, OverflowError, ValueError):
                raise ValueError(f"{value!r} is not a duration (or is too long): {_HELP}") from None
        else:
            raise ValueError(f"{value!r} is not a duration: {_HELP}")
    else:
        raise ValueError(f"{value!r} is not a duration: {_HELP}")
    if result <= dt.timedelta(0):
        raise _not_positive(value)
    if result > MAX_DURATION:
        raise _too_long(value)
    return result


def to_milliseconds(value: dt.timedelta) -> int:
    """A timeout as PostgreSQL takes it (lock_timeout, statement_timeout: whole milliseconds):
    rounded up, so a positive duration never becomes 0, which PostgreSQL reads as no timeout at
    all. ValueError for a duration that is not positive, or longer than PostgreSQL accepts."""
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    if micros <= 0:
        raise ValueError(
            f"a timeout of {format_duration(value)} is not positive: PostgreSQL would read 0 as "
            "no timeout at all"
        )
    milliseconds = -(-micros // 1000)
    if milliseconds > MAX_POSTGRES_TIMEOUT_MS:
        raise ValueError(
            f"a timeout of {format_duration(value)} is longer than PostgreSQL takes "
            f"({MAX_POSTGRES_TIMEOUT_MS}ms, about 24 days)"
        )
    return milliseconds


def format_duration(value: dt.timedelta | None) -> str:
    if value is None:
        return "forever"
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if abs(seconds) < 1:
        return f"{_plain(seconds * 1000)}ms"
    return f"{_plain(seconds)}s"


def _plain(number: float) -> str:
    """A number as parse_duration reads it back: no exponent, no trailing zeros."""
    if number.is_integer():
        return str(int(number))
    return f"{number:.6f}".rstrip("0").rstrip(".")


def parse_when(value: str, now: dt.datetime) -> dt.datetime:
    """A point in time: an ISO timestamp (UTC when it has no zone) or a duration ago."""
    try:
        return now - parse_duration(value)
    except (ValueError, OverflowError):
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a timestamp (2026-01-31, 2026-01-31T12:00:00+00:00) "
            "nor a duration ago (30d, 72h, at most 100 years)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment
