"""Which database a Procrastinate app uses, read from its connector.

Every connector Procrastinate ships tells it, one way or another:

- ``PsycopgConnector`` and ``SyncPsycopgConnector``: the pool's ``conninfo`` and ``kwargs`` once
  opened, else the arguments the connector was built with;
- the Django connector (``procrastinate.contrib.django``): Django's connection parameters for its
  alias (``DATABASES``); at worker time Procrastinate swaps it for a ``PsycopgConnector`` built
  from the same parameters;
- the SQLAlchemy connector (deferring only): its engine's URL, or the ``dsn`` it was built with.

Only our own ready-made app (`LazyConnector`) falls back to DATABASE_URL, PG* variables and the
embedded server. In a user's app nothing is guessed: a connector that does not tell, and no
``retention.blueprint(settings, database=...)``, is an `UnknownDatabase` error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import procrastinate
import psycopg
from procrastinate import exceptions as procrastinate_exceptions
from psycopg import conninfo as libpq

from retention import errors
from retention.config import dsn
from retention.config import settings as settings_mod
from retention.interfaces import procrastinate_private
from retention.pg import database

FIX = (
    "pass the database to the blueprint: retention.blueprint(settings, "
    'database="postgresql://user@host/dbname")'
)


class UnknownDatabase(errors.ConfigError):
    """The app's connector does not say which database it uses, and no database= was given."""


class LazyConnector(procrastinate.PsycopgConnector):
    """The ready-made app's connector: a PsycopgConnector whose conninfo is resolved from the
    settings (DATABASE_URL, PG* variables, then the embedded server) when first used."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        location: database.Location | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.location: database.Location | None = None
        if location is not None:
            self.use(location)

    def use(self, location: database.Location) -> None:
        self.location = location
        procrastinate_private.set_conninfo(self, location.conninfo)

    def resolve(self, *, start: bool = True) -> database.Location:
        if self.location is not None:
            return self.location
        found = database.locate(self.settings, start=start)
        if start:
            self.use(found)
        return found

    async def open_async(self, pool: Any = None) -> None:
        if pool is None:
            self.resolve()
        await super().open_async(pool)

    def get_sync_connector(self) -> Any:
        self.resolve()
        return super().get_sync_connector()


def given(conninfo: str, source: str) -> database.Location:
    """A database named by hand (database=, --app's blueprint): checked as libpq would parse it."""
    try:
        libpq.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise errors.ConfigError(
            f"{source}: not a valid libpq URL or conninfo: {dsn.redact(conninfo)!r}"
        ) from None
    return database.Location(conninfo=conninfo, source=source)


def location_for_app(
    app: procrastinate.App,
    *,
    database_arg: str | None = None,
    name: str = "the app",
    start: bool = True,
) -> database.Location:
    """The database of `app`: `database_arg` when given (the blueprint's database=), else what
    its connector tells. Raises UnknownDatabase when neither says. `name` is how the app is
    called in the location's source ("the app myapp.app"). With start=False, our own app does
    not start the embedded server (the location then only says where it would be)."""
    if database_arg is not None:
        return given(database_arg, "the blueprint's database= argument")
    connector = app.connector
    if isinstance(connector, LazyConnector):
        return connector.resolve(start=start)
    conninfo = connector_conninfo(connector)
    if conninfo is None:
        raise UnknownDatabase(
            f"retention cannot tell which database {name} uses (its connector is a "
            f"{type(connector).__name__}): {FIX}"
        )
    return database.Location(conninfo=conninfo, source=name)


def connector_conninfo(connector: Any) -> str | None:
    """The libpq conninfo of a connector's database, or None when it does not tell. An empty
    string is libpq's defaults (PG* variables), which is what such a connector connects to."""
    if _is_django(connector):
        return _django_conninfo(connector)
    if _is_sqlalchemy(connector):
        return _sqlalchemy_conninfo(connector)
    pool = _open_pool(connector)
    if pool is not None:
        conninfo = getattr(pool, "conninfo", None)
        if isinstance(conninfo, str):
            return _conninfo(conninfo, getattr(pool, "kwargs", None) or {})
    args = procrastinate_private.pool_args(connector)
    if args is None:
        return None
    extra = dict(args.get("kwargs") or {})
    extra.update(args)
    base = args.get("conninfo", args.get("dsn", ""))
    return _conninfo(base if isinstance(base, str) else "", extra)


def _open_pool(connector: Any) -> Any | None:
    """The pool of an opened (Sync)PsycopgConnector, through its public `pool` property."""
    if not isinstance(
        connector, procrastinate.PsycopgConnector | procrastinate.SyncPsycopgConnector
    ):
        return None
    try:
        return connector.pool
    except procrastinate_exceptions.AppNotOpen:
        return None


def _libpq_keywords() -> set[str]:
    return {item.keyword.decode() for item in psycopg.pq.Conninfo.get_defaults()}


def _conninfo(base: str, params: Mapping[str, Any]) -> str:
    keywords = _libpq_keywords()
    extra = {
        key: value
        for key, value in params.items()
        if key in keywords and value not in (None, "") and isinstance(value, str | int)
    }
    return libpq.make_conninfo(base, **extra)


def _is_django(connector: Any) -> bool:
    return type(connector).__module__.startswith("procrastinate.contrib.django") and hasattr(
        connector, "alias"
    )


def _django_conninfo(connector: Any) -> str | None:
    """Django's connection parameters for the connector's alias, as Procrastinate's worker
    connector gets them (`procrastinate.contrib.django.utils.connector_params`)."""
    from procrastinate.contrib.django import utils as django_utils

    try:
        params = django_utils.connector_params(connector.alias)
    except Exception as exc:  # Django not configured, unknown alias, not PostgreSQL
        raise UnknownDatabase(
            f"retention cannot read Django's database settings for alias {connector.alias!r} "
            f"({type(exc).__name__}: {exc}): {FIX}"
        ) from None
    conninfo = params.get("conninfo")
    return _conninfo(conninfo if isinstance(conninfo, str) else "", params)


def _is_sqlalchemy(connector: Any) -> bool:
    return type(connector).__module__.startswith("procrastinate.contrib.sqlalchemy")


def _sqlalchemy_conninfo(connector: Any) -> str | None:
    """The SQLAlchemy engine's URL (or the dsn the connector was built with), as a libpq URL."""
    from sqlalchemy.engine import make_url

    try:
        url = connector.engine.url
    except procrastinate_exceptions.AppNotOpen:
        raw = procrastinate_private.sqlalchemy_dsn(connector)
        if raw is None:
            return None
        url = make_url(raw)
    plain = url.set(drivername="postgresql")
    return str(plain.render_as_string(hide_password=False))
