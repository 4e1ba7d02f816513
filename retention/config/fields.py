"""The value types of the settings: durations, ages, crons, globs, identifiers, bounded numbers,
and the base model every section of the settings is made of (unknown keys and NUL refused)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    field_validator,
)

from retention.config import durations, globs

# Bounds of the knobs: a value outside them is refused when the settings load (exit 2), never
# found out in the middle of a run. Durations: positive, at most durations.MAX_DURATION.
MAX_BATCH_SIZE = 1_000_000
MAX_BATCH_SECONDS = 3600.0
MAX_RUN_SECONDS = 7 * 86400.0
MIN_LOCK_TIMEOUT = durations.ONE_MILLISECOND
MAX_LOCK_TIMEOUT = dt.timedelta(seconds=MAX_BATCH_SECONDS)
# Pacing: a pause between two batches of at most an hour, a replica lag bound of at most a day.
MAX_PAUSE = dt.timedelta(hours=1)
MAX_REPLICATION_LAG = dt.timedelta(days=1)
MAX_DAYS = durations.MAX_DAYS
WHERE_INT_RANGE = (-(2**63), 2**63 - 1)


def _duration(value: object) -> dt.timedelta:
    return durations.parse_duration(value)


def _age(value: object) -> dt.timedelta | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "forever"):
        return None
    return durations.parse_duration(value)


def _cron(value: object) -> str:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise ValueError(
            f"{value!r} is not a valid cron expression: five fields, minute hour day month "
            "weekday, e.g. '0 3 * * *' (every day at 03:00)"
        )
    return value


def _glob(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a glob: give a non-empty string such as 'app.*'")
    globs.to_regex(value)
    return value


def _identifier(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a valid SQL identifier: give a non-empty name")
    _refuse_nul(value)
    return value


def _refuse_nul(value: object) -> None:
    """PostgreSQL text and file paths cannot hold a NUL character: refused here, not mid-run."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(
            "contains a NUL character (\\x00 / \\u0000), which neither PostgreSQL nor a file "
            "path can hold: remove it"
        )


def _no_nul(value: Any) -> Any:
    """Strings, and strings in a list, of any key (nested tables check their own keys)."""
    for item in value if isinstance(value, list) else [value]:
        _refuse_nul(item)
    return value


def _no_bool(value: object) -> object:
    """`batch_size = true` is a mistake, not 1."""
    if isinstance(value, bool):
        raise ValueError(
            f"{str(value).lower()} is not a number: give a number in the range the "
            "configuration reference states"
        )
    return value


NotABool = BeforeValidator(_no_bool)


def _whole_number(low: int, high: int, unit: str, example: str) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(
                f"{value} is out of range: give a whole number of {unit} from {low} to {high}, "
                f"e.g. {example}"
            )
        return value

    return AfterValidator(check)


def _seconds(maximum: float, maximum_text: str, example: str) -> AfterValidator:
    def check(value: float) -> float:
        if not math.isfinite(value) or not 0 < value <= maximum:
            raise ValueError(
                f"{value!r} is out of range: give a finite number of seconds, more than 0 and "
                f"at most {maximum:g} ({maximum_text}), e.g. {example}"
            )
        return value

    return AfterValidator(check)


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_duration),
    PlainSerializer(durations.format_duration, return_type=str),
]
Age = Annotated[
    dt.timedelta | None,
    BeforeValidator(_age),
    PlainSerializer(durations.format_duration, return_type=str),
]
Cron = Annotated[str, BeforeValidator(_cron)]
Glob = Annotated[str, BeforeValidator(_glob)]
Identifier = Annotated[str, BeforeValidator(_identifier)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_character(cls, value: Any) -> Any:
        return _no_nul(value)
