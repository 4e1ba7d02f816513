"""Fixtures: a real PostgreSQL, a template database holding Procrastinate's schema and our
migrations, and a fresh database per test created from it.

The server: libpq's PG* variables when any is set; else libpq's defaults when a server answers
there; else the embedded server (in a temporary RETENTION_HOME).

The tiers are directories, each test marked after its own (`-m unit`, `-m "not chaos"`, ...):

- tests/unit: no database, no subprocess that needs one; the whole tier runs in seconds.
- tests/integration: a real PostgreSQL, our code called in-process.
- tests/acceptance: the `retention` CLI and workers in subprocesses, as a user runs them.
- tests/chaos: processes killed mid-run, races, lock contention, concurrent runs.

Helpers shared by the tests are in tests/helpers.py (`from tests.helpers import ...`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo as libpq
from psycopg import sql

from retention.embedded import server as embedded
from retention.pg import database as pg_database
from retention.pg import migrate
from tests.helpers import PG_VARIABLES, dsn_for

TIERS = ("unit", "integration", "acceptance", "chaos")
TESTS = Path(__file__).resolve().parent


def _answers(conninfo: str) -> bool:
    try:
        with psycopg.connect(conninfo, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session")
def server_conninfo() -> Iterator[str]:
    """Conninfo of a maintenance database on the test server."""
    if any(os.environ.get(name) for name in PG_VARIABLES) or _answers(""):
        with psycopg.connect("") as probe:
            info = probe.info
            params = {"host": info.host, "port": str(info.port), "user": info.user}
        params["dbname"] = os.environ.get("PGDATABASE") or "postgres"
        yield libpq.make_conninfo(**params)
        return
    home = Path(tempfile.mkdtemp(prefix="rt-"))
    try:
        yield embedded.start(home)
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(server_conninfo: str) -> Iterator[str]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"retention_tpl_{worker}_{os.getpid()}"
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(dsn_for(server_conninfo, name), autocommit=True) as conn:
        migrate.apply(conn)
    yield name
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database(server_conninfo: str, template_db: str) -> Iterator[str]:
    """A fresh database from the template; yields its conninfo."""
    name = f"retention_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    yield dsn_for(server_conninfo, name)
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def empty_database(server_conninfo: str) -> Iterator[str]:
    """A fresh database with nothing in it (no Procrastinate schema, no migrations)."""
    name = f"retention_e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield dsn_for(server_conninfo, name)
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def conn(database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database, autocommit=True) as connection:
        yield connection


@pytest.fixture
def location(database: str) -> pg_database.Location:
    return pg_database.Location(conninfo=database, source="DATABASE_URL")


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray RETENTION_* / DATABASE_URL from the developer's shell, no ./retention.toml."""
    for name in list(os.environ):
        if name.startswith("RETENTION_") or name in ("DATABASE_URL", "LOG_RETENTION_DAYS"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def app(conn: psycopg.Connection) -> psycopg.Connection:
    """The orphan sweep's application: attachments with thumbnails, and avatars whose files are
    kept (see helpers.orphan_policies)."""
    conn.execute(
        "CREATE TABLE attachments (id serial PRIMARY KEY, created_at timestamptz NOT NULL "
        "DEFAULT now(), path text)"
    )
    conn.execute(
        "CREATE TABLE thumbnails (id serial PRIMARY KEY, attachment_id int, file varchar(500))"
    )
    conn.execute("CREATE TABLE avatars (id serial PRIMARY KEY, created_at timestamptz, img text)")
    return conn


def _tier(item: pytest.Item) -> str | None:
    parts = item.path.resolve().relative_to(TESTS).parts
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier, from its directory."""
    for item in items:
        tier = _tier(item)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture is set up: a test outside the tiers, or a unit test that asks for the
    database (any fixture that reaches `server_conninfo`), fails with the reason."""
    tier = _tier(item)
    if tier is None:
        pytest.fail(
            f"{item.nodeid}: every test belongs to a tier, a directory of tests/: "
            + ", ".join(TIERS),
            pytrace=False,
        )
    if tier == "unit" and "server_conninfo" in getattr(item, "fixturenames", ()):
        pytest.fail(
            f"{item.nodeid}: a unit test needs no database; move it to tests/integration",
            pytrace=False,
        )
