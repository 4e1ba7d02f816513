"""The blueprint's tasks use the database of the app they run in, for every connector Procrastinate
ships, and never a guessed one: a connector that does not tell, without database=, is an error
naming the fix (and nothing is started, no DATABASE_URL or PG* variable is read)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import pytest
from procrastinate import connector as connector_mod
from psycopg import conninfo as libpq

from retention.interfaces import connectors
from tests.helpers import ROOT, dsn_for


def _dbname(conninfo: str) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def _decoy(database: str) -> str:
    """Another database on the same server: where a guess (DATABASE_URL, PG*) would go."""
    return dsn_for(database, "postgres")


@pytest.fixture
def decoys(monkeypatch: pytest.MonkeyPatch, database: str) -> None:
    """DATABASE_URL and PGDATABASE name another database: a location read from them is wrong."""
    monkeypatch.setenv("DATABASE_URL", _decoy(database))
    monkeypatch.setenv("PGDATABASE", "postgres")


def _located(app: procrastinate.App, **kwargs: Any) -> str:
    return connectors.location_for_app(app, **kwargs).conninfo


@pytest.mark.usefixtures("decoys")
def test_psycopg_connector_opened_and_not(database: str) -> None:
    expected = libpq.conninfo_to_dict(database)["dbname"]
    params = libpq.conninfo_to_dict(database)
    dbname = params.pop("dbname")
    by_kwargs = procrastinate.App(
        connector=procrastinate.PsycopgConnector(kwargs={**params, "dbname": dbname})
    )
    by_conninfo = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database))
    for app in (by_kwargs, by_conninfo):
        assert _dbname(_located(app)) == expected

        async def opened(app: procrastinate.App = app) -> str:
            async with app.open_async():
                return _located(app)

        assert _dbname(asyncio.run(opened())) == expected


@pytest.mark.usefixtures("decoys")
def test_sync_psycopg_connector_opened_and_not(database: str) -> None:
    expected = libpq.conninfo_to_dict(database)["dbname"]
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=database))
    assert _dbname(_located(app)) == expected
    with app.open():
        assert _dbname(_located(app)) == expected


@pytest.mark.usefixtures("decoys")
def test_sqlalchemy_connector_opened_and_not(database: str) -> None:
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg2")
    from procrastinate.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector

    params = libpq.conninfo_to_dict(database)
    url = (
        f"postgresql+psycopg2://{params.get('user', '')}@/{params['dbname']}"
        f"?host={params.get('host', '')}&port={params.get('port', '5432')}"
    )
    app = procrastinate.App(connector=SQLAlchemyPsycopg2Connector(dsn=url))
    assert _dbname(_located(app)) == params["dbname"]
    with app.open():
        assert _dbname(_located(app)) == params["dbname"]


DJANGO_SETTINGS = """\
SECRET_KEY = "test"
INSTALLED_APPS = ["procrastinate.contrib.django"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": {name!r},
    "USER": {user!r}, "HOST": {host!r}, "PORT": {port!r}}}}}
USE_TZ = True
"""
DJANGO_CHECK = """\
import django
django.setup()
import procrastinate
from procrastinate.contrib.django.django_connector import DjangoConnector
from retention.interfaces import connectors

app = procrastinate.App(connector=DjangoConnector())
print(connectors.location_for_app(app).conninfo)
print(connectors.location_for_app(app.with_connector(app.connector.get_worker_connector())).conninfo)
"""


def test_django_connector_and_the_worker_connector_procrastinate_swaps_in(
    database: str, tmp_path: Path
) -> None:
    pytest.importorskip("django")
    params = libpq.conninfo_to_dict(database)
    (tmp_path / "djsettings.py").write_text(
        DJANGO_SETTINGS.format(
            name=params["dbname"],
            user=params.get("user", ""),
            host=params.get("host", ""),
            port=params.get("port", ""),
        )
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PG") and key != "DATABASE_URL"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="djsettings",
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
        DATABASE_URL=_decoy(database),
    )
    done = subprocess.run(
        [sys.executable, "-c", DJANGO_CHECK],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = done.stdout.splitlines()
    assert len(found) == 2, done.stdout
    assert [_dbname(conninfo) for conninfo in found] == [params["dbname"]] * 2


class SilentConnector(connector_mod.BaseAsyncConnector):
    """A connector of the user's own that does not say where its database is."""

    async def open_async(self, pool: object = None) -> None:
        return None

    async def close_async(self) -> None:
        return None

    async def execute_query_async(self, query: Any, **arguments: Any) -> None:
        raise NotImplementedError

    async def execute_query_one_async(self, query: Any, **arguments: Any) -> dict[str, Any]:
        raise NotImplementedError

    async def execute_query_all_async(self, query: Any, **arguments: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def listen_notify(self, on_notification: Any, channels: Iterable[str]) -> None:
        raise NotImplementedError


@pytest.mark.usefixtures("decoys")
def test_a_connector_that_does_not_tell_is_an_error_naming_the_fix(database: str) -> None:
    app = procrastinate.App(connector=SilentConnector())
    with pytest.raises(connectors.UnknownDatabase) as raised:
        connectors.location_for_app(app)
    message = str(raised.value)
    assert "SilentConnector" in message
    assert "retention.blueprint(settings, database=" in message
    assert "\n" not in message


@pytest.mark.usefixtures("decoys")
def test_database_argument_names_it(database: str) -> None:
    app = procrastinate.App(connector=SilentConnector())
    found = connectors.location_for_app(app, database_arg=database)
    assert _dbname(found.conninfo) == libpq.conninfo_to_dict(database)["dbname"]


def test_a_bad_database_argument_is_refused_when_the_blueprint_is_built(database: str) -> None:
    import retention
    from retention import errors

    with pytest.raises(errors.ConfigError, match="not a valid libpq URL"):
        retention.blueprint(database="host=x port")
