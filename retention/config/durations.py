"""Durations and timestamps as users write them: `30d`, `72h`, `15m`, `90s`, `2w`, ISO 8601."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import TypeAdapter, ValidationError

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


def parse_duration(value: object) -> dt.timedelta:
    """Parse a duration; raise ValueError with a message a user can act on."""
    if isinstance(value, dt.timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration: {_HELP}")
    elif isinstance(value, int | float):
        result = dt.timedelta(seconds=value)
    elif isinstance(value, str) and value.strip().startswith("-"):
        raise ValueError(f"{value!r} must be longer than zero")
    elif isinstance(value, str):
        match = _SHORT.match(value)
        if match:
            result = float(match.group(1)) * _UNITS[match.group(2).lower()]
        elif value.strip().upper().startswith("P"):
            try:
                result = _ISO.validate_python(value.strip())
            except ValidationError:
                raise ValueError(f"{value!r} is not a duration: {_HELP}") from None
        else:
            raise ValueError(f"{value!r} is not a duration: {_HELP}")
    else:
        raise ValueError(f"{value!r} is not a duration: {_HELP}")
    if result <= dt.timedelta(0):
        raise ValueError(f"{value!r} must be longer than zero")
    return result


def format_duration(value: dt.timedelta | None) -> str:
    if value is None:
        return "forever"
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def parse_when(value: str, now: dt.datetime) -> dt.datetime:
    """A point in time: an ISO timestamp (UTC when it has no zone) or a duration ago."""
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a timestamp (2026-01-31, 2026-01-31T12:00:00+00:00) "
            "nor a duration ago (30d, 72h)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment
