"""Where the database is: DATABASE_URL (or --database-url), then libpq's PG* variables, then
the embedded server; and connections to it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import struct
from pathlib import Path
from typing import Any

import psycopg
from psycopg import adapt
from psycopg import conninfo as libpq
from psycopg.types import datetime as pg_datetime

from retention import errors
from retention.config import dsn
from retention.config import settings as settings_mod
from retention.embedded import server as embedded

_PG_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Location:
    conninfo: str
    source: str  # "DATABASE_URL", "PG* variables" or "embedded"
    home: Path | None = None

    @property
    def display(self) -> str:
        return dsn.redact(self.conninfo) or "(libpq defaults from PG* variables)"


def home(settings: settings_mod.Settings) -> Path:
    return Path(settings.home) if settings.home else embedded.default_home()


def locate(settings: settings_mod.Settings, *, start: bool = True) -> Location:
    """Which database applies and why. With start=False, the embedded server is not started."""
    if settings.database_url:
        try:
            libpq.conninfo_to_dict(settings.database_url)
        except psycopg.ProgrammingError:
            raise errors.ConfigError(
                f"DATABASE_URL / --database-url is not a valid libpq URL or conninfo: "
                f"{dsn.redact(settings.database_url)!r}"
            ) from None
        return Location(conninfo=settings.database_url, source="DATABASE_URL")
    given = [name for name in _PG_VARIABLES if os.environ.get(name)]
    if given:
        return Location(conninfo="", source="PG* variables (" + ", ".join(given) + ")")
    where = home(settings)
    conninfo = embedded.start(where) if start else ""
    return Location(conninfo=conninfo, source="embedded", home=where)


def connect(location: Location, *, autocommit: bool = True) -> psycopg.Connection:
    try:
        conn = psycopg.connect(
            location.conninfo, autocommit=autocommit, application_name="retention"
        )
    except psycopg.OperationalError as exc:
        message = dsn.redact(str(exc)).strip().splitlines()[0] if str(exc) else "connection failed"
        raise errors.DatabaseUnreachable(
            f"cannot connect to the database ({location.source}: {location.display}): {message}; "
            f"{_how_to_reach(location)}"
        ) from None
    load_infinities(conn)
    return conn


def _how_to_reach(location: Location) -> str:
    if location.source == "embedded":
        return "see `retention db`; `retention db --stop` then any command starts it again"
    if location.source == "DATABASE_URL":
        return (
            "check that the server runs and that DATABASE_URL / --database-url names its host, "
            "port, database, user and password"
        )
    return "check that the server runs and that the PG* variables name it (or set DATABASE_URL)"


class InfiniteDatetime(dt.datetime):
    """PostgreSQL's `infinity` / `-infinity` of a timestamptz or timestamp column, loaded as the
    latest / earliest datetime (aware, in UTC, for timestamptz; naive for timestamp): it compares,
    subtracts and prints (ISO 8601) as that datetime, and goes back to the server as `infinity` /
    `-infinity` again, so that a walk resuming after such a row resumes exactly there."""


class InfiniteDate(dt.date):
    """`infinity` / `-infinity` of a date column: date.max / date.min, sent back as itself."""


def _infinite_datetime(positive: bool, aware: bool) -> InfiniteDatetime:
    tz = dt.UTC if aware else None
    if positive:
        return InfiniteDatetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=tz)
    return InfiniteDatetime(1, 1, 1, tzinfo=tz)


def _infinite_date(positive: bool) -> InfiniteDate:
    return InfiniteDate(9999, 12, 31) if positive else InfiniteDate(1, 1, 1)


_TEXT = {b"infinity": True, b"-infinity": False}
_INT8_INFINITY = {2**63 - 1: True, -(2**63): False}
_INT4_INFINITY = {2**31 - 1: True, -(2**31): False}


class _TimestamptzLoader(pg_datetime.TimestamptzLoader):
    def load(self, data: Any) -> dt.datetime:
        sign = _TEXT.get(bytes(data))
        return super().load(data) if sign is None else _infinite_datetime(sign, aware=True)


class _TimestampLoader(pg_datetime.TimestampLoader):
    def load(self, data: Any) -> dt.datetime:
        sign = _TEXT.get(bytes(data))
        return super().load(data) if sign is None else _infinite_datetime(sign, aware=False)


class _DateLoader(pg_datetime.DateLoader):
    def load(self, data: Any) -> dt.date:
        sign = _TEXT.get(bytes(data))
        return super().load(data) if sign is None else _infinite_date(sign)


class _TimestamptzBinaryLoader(pg_datetime.TimestamptzBinaryLoader):
    def load(self, data: Any) -> dt.datetime:
        sign = _INT8_INFINITY.get(struct.unpack("!q", data)[0])
        return super().load(data) if sign is None else _infinite_datetime(sign, aware=True)


class _TimestampBinaryLoader(pg_datetime.TimestampBinaryLoader):
    def load(self, data: Any) -> dt.datetime:
        sign = _INT8_INFINITY.get(struct.unpack("!q", data)[0])
        return super().load(data) if sign is None else _infinite_datetime(sign, aware=False)


class _DateBinaryLoader(pg_datetime.DateBinaryLoader):
    def load(self, data: Any) -> dt.date:
        sign = _INT4_INFINITY.get(struct.unpack("!i", data)[0])
        return super().load(data) if sign is None else _infinite_date(sign)


class _InfinityDumper(adapt.Dumper):
    """An infinite value as `infinity` / `-infinity`, of unknown type: the server reads it as
    the type of the cast or the column it meets (timestamptz, timestamp or date)."""

    oid = 0

    def dump(self, obj: dt.date) -> bytes:
        return b"-infinity" if obj.year == 1 else b"infinity"


def load_infinities(conn: psycopg.Connection) -> None:
    """Load `infinity` and `-infinity` of timestamptz, timestamp and date columns on `conn` (text
    and binary, arrays too) as InfiniteDatetime / InfiniteDate instead of failing (psycopg's own
    loaders raise DataError on them); and send those back as `infinity` / `-infinity`. A row
    dated `-infinity` then sorts first and is older than any cutoff, `infinity` last and never
    old enough, in Python as in SQL."""
    adapters = conn.adapters
    adapters.register_loader("timestamptz", _TimestamptzLoader)
    adapters.register_loader("timestamp", _TimestampLoader)
    adapters.register_loader("date", _DateLoader)
    adapters.register_loader("timestamptz", _TimestamptzBinaryLoader)
    adapters.register_loader("timestamp", _TimestampBinaryLoader)
    adapters.register_loader("date", _DateBinaryLoader)
    adapters.register_dumper(InfiniteDatetime, _InfinityDumper)
    adapters.register_dumper(InfiniteDate, _InfinityDumper)
