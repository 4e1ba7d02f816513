"""Where the database is: DATABASE_URL (or --database-url), then libpq's PG* variables, then
the embedded server; and connections to it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import psycopg
from psycopg import conninfo as libpq

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
        return psycopg.connect(
            location.conninfo, autocommit=autocommit, application_name="retention"
        )
    except psycopg.OperationalError as exc:
        message = dsn.redact(str(exc)).strip().splitlines()[0] if str(exc) else "connection failed"
        raise errors.DatabaseError(
            f"cannot connect to the database ({location.source}: {location.display}): {message}"
        ) from None
