"""Which database a Procrastinate app's connector uses, as far as it tells."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import conninfo as libpq

from retention.config import settings as settings_mod
from retention.interfaces import procrastinate_private
from retention.pg import database


def location_for_app(app: Any, settings: settings_mod.Settings) -> database.Location:
    """The database of a Procrastinate app's connector when it tells, else the settings'."""
    known = getattr(app.connector, "location", None)
    if isinstance(known, database.Location):
        return known
    pool = procrastinate_private.async_pool(app.connector)
    conninfo = getattr(pool, "conninfo", None)
    if isinstance(conninfo, str):
        keywords = {item.keyword.decode() for item in psycopg.pq.Conninfo.get_defaults()}
        extra = {
            key: value
            for key, value in (getattr(pool, "kwargs", None) or {}).items()
            if key in keywords and isinstance(value, str | int)
        }
        if conninfo or extra:
            return database.Location(
                conninfo=libpq.make_conninfo(conninfo, **extra), source="the app's connector"
            )
    return database.locate(settings)
