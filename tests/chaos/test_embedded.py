"""Users of the embedded server SIGKILLed: they do not keep it alive after the last live one."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from retention.embedded import server as embedded
from tests.helpers import dead_pid, first_line, handle_pids, run_child, spawn


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
