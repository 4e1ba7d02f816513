"""Where the database is: DATABASE_URL (or --database-url), then libpq's PG* variables, then
the embedded server. Also connections, and DSN redaction so that no password is ever shown."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as libpq

from retention import embedded, errors
from retention import settings as settings_mod

_PG_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Location:
    conninfo: str
    source: str  # "DATABASE_URL", "PG* variables" or "embedded"
    home: Path | None = None

    @property
    def display(self) -> str:
        return redact(self.conninfo) or "(libpq defaults from PG* variables)"


def redact(conninfo: str | None) -> str:
    """The conninfo with any password replaced by ***."""
    if not conninfo:
        return ""
    text = _URL_PASSWORD.sub(r"\1***@", conninfo)
    text = re.sub(r"([?&]password=)[^&]*", r"\1***", text, flags=re.IGNORECASE)
    return _KV_PASSWORD.sub(r"\1***", text)


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
                f"{redact(settings.database_url)!r}"
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
        message = redact(str(exc)).strip().splitlines()[0] if str(exc) else "connection failed"
        raise errors.DatabaseError(
            f"cannot connect to the database ({location.source}: {location.display}): {message}"
        ) from None


def location_for_app(app: Any, settings: settings_mod.Settings) -> Location:
    """The database of a Procrastinate app's connector when it tells, else the settings'."""
    known = getattr(app.connector, "location", None)
    if isinstance(known, Location):
        return known
    pool = getattr(app.connector, "_async_pool", None)
    conninfo = getattr(pool, "conninfo", None)
    if isinstance(conninfo, str):
        keywords = {item.keyword.decode() for item in psycopg.pq.Conninfo.get_defaults()}
        extra = {
            key: value
            for key, value in (getattr(pool, "kwargs", None) or {}).items()
            if key in keywords and isinstance(value, str | int)
        }
        if conninfo or extra:
            return Location(
                conninfo=libpq.make_conninfo(conninfo, **extra), source="the app's connector"
            )
    return locate(settings)
