"""Swap races: while a real outbox drain, `[[directories]]` sweep or orphan sweep runs, another
process keeps exchanging a directory of the root with a symlink to a directory outside the root
that holds files and directories of the very same names. Whatever the timing, nothing outside
the root may be deleted. Real files, a real process, real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from retention import errors
from retention.config import settings as settings_mod
from retention.files import outbox
from retention.run import runner

ROUNDS = 6
DIRECTORIES = 60
FILES = 8
EMPTY = 20
OLD = 3 * 3600.0
FAR = time.monotonic() + 3600

SWAPPER = r"""
import ctypes, os, sys
top, spare, stop = sys.argv[1:4]
libc = ctypes.CDLL(None, use_errno=True)

def exchange():
    if libc.renameat2(-100, top.encode(), -100, spare.encode(), 2) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))

try:
    exchange()
except (AttributeError, OSError):
    sys.exit(3)
print("ready", flush=True)
while not os.path.exists(stop):
    exchange()
if os.path.islink(top):
    exchange()
"""


def make_settings(database: str, **overrides: object) -> settings_mod.Settings:
    return settings_mod.Settings(database_url=database, **overrides)


def _put(path: Path, when: float) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 16)
    os.utime(path, (when, when))


def _build(base: Path, decoy: bool) -> None:
    """`DIRECTORIES` directories of `FILES` old files each, and `EMPTY` old empty directories
    (those missing are made again); consecutive mtimes go to different directories, so that
    every batch of a sweep meets many of them."""
    now = time.time()
    for k in range(DIRECTORIES):
        for i in range(FILES):
            _put(base / f"d{k:03}" / f"f{i}.bin", now - OLD - (i * DIRECTORIES + k))
    for k in range(EMPTY):
        empty = base / f"e{k:03}"
        empty.mkdir(parents=True, exist_ok=True)
        os.utime(empty, (now - OLD, now - OLD))
    for k in range(DIRECTORIES):
        os.utime(base / f"d{k:03}", (now - OLD, now - OLD))
    if decoy:
        (base / "precious.txt").write_text("never deleted")


def _everything(base: Path) -> set[str]:
    return {str(p.relative_to(base)) for p in base.rglob("*")}


class Arena:
    """root/top (the application's files) and outside/top (same names: what must stay), with
    root/.spare, a symlink to outside/top, exchanged with root/top by the swapper."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.outside = base / "outside" / "top"
        self.top = self.root / "top"
        self.spare = self.root / ".spare"
        self.stop = base / "stop"
        _build(self.outside, decoy=True)
        self.decoys = _everything(self.outside)
        self.root.mkdir()
        self.spare.symlink_to(self.outside, target_is_directory=True)

    def reset(self) -> None:
        assert not self.top.is_symlink()
        assert self.spare.is_symlink()
        _build(self.top, decoy=False)
        _build(self.outside, decoy=True)

    def lost(self) -> set[str]:
        return self.decoys - _everything(self.outside)

    @property
    def paths(self) -> list[str]:
        return [f"top/d{k:03}/f{i}.bin" for k in range(DIRECTORIES) for i in range(FILES)]

    def swapping(self) -> Iterator[None]:
        self.stop.unlink(missing_ok=True)
        with subprocess.Popen(
            [sys.executable, "-c", SWAPPER, str(self.top), str(self.spare), str(self.stop)],
            stdout=subprocess.PIPE,
            text=True,
        ) as swapper:
            try:
                line = swapper.stdout.readline() if swapper.stdout else ""
                if line.strip() != "ready":
                    swapper.wait(timeout=30)
                    pytest.skip(f"no atomic exchange of directories here ({swapper.returncode})")
                yield
            finally:
                self.stop.touch()
                try:
                    swapper.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    swapper.kill()
                    swapper.wait(timeout=30)
                    raise


def _rounds(arena: Arena, run: Callable[[], None]) -> tuple[Counter[str], int]:
    """`ROUNDS` runs under the swapper; per decoy, how many times it was deleted, and how many of
    the root's files went (so that the race is known to have been run)."""
    lost: Counter[str] = Counter()
    went = 0
    for _ in range(ROUNDS):
        arena.reset()
        before = _everything(arena.top)
        for _ in arena.swapping():
            run()
        went += len(before - _everything(arena.top))
        lost.update(arena.lost())
    return lost, went


def _drain(conn: psycopg.Connection, arena: Arena) -> Callable[[], None]:
    def run() -> None:
        conn.execute("DELETE FROM retention_file_outbox")
        with conn.transaction(), conn.cursor() as cur:
            outbox.enqueue(cur, [(str(arena.root), p, "race") for p in arena.paths], None)
        outbox.drain(conn, roots_allowed=[arena.root], dry_run=False, deadline=FAR, batch_size=100)

    return run


def _sweep(location, settings: settings_mod.Settings, stage: str) -> Callable[[], None]:
    """A run of one stage. A run may fail, e.g. when its listing meets an entry that is a symlink
    one moment and a directory the next: what matters here is what it deleted before."""

    def run() -> None:
        with contextlib.suppress(errors.RunFailed):
            runner.execute(settings, location, stages=[stage], dry_run=False, trigger="cli")

    return run


def _directory_sweep(database: str, location, arena: Arena) -> Callable[[], None]:
    settings = make_settings(
        database,
        batch_size=25,
        directories=[{"root": str(arena.root), "age": "1h", "remove_empty_dirs": True}],
    )
    return _sweep(location, settings, "directories")


def _orphan_sweep(
    conn: psycopg.Connection, database: str, location, arena: Arena
) -> Callable[[], None]:
    conn.execute(
        "CREATE TABLE attachments (id serial PRIMARY KEY, created_at timestamptz, path text)"
    )
    conn.execute("CREATE INDEX ON attachments (path)")
    settings = make_settings(
        database,
        batch_size=25,
        tables=[
            {
                "table": "attachments",
                "timestamp": "created_at",
                "files": [{"column": "path", "root": str(arena.root)}],
            }
        ],
        orphans={"enabled": True, "grace": "1h"},
    )
    return _sweep(location, settings, "orphans")


@pytest.mark.parametrize("operation", ["outbox drain", "directory sweep", "orphan sweep"])
def test_nothing_outside_the_root_is_deleted_while_an_ancestor_is_swapped_for_a_symlink(
    conn, database, location, tmp_path, operation
):
    arena = Arena(tmp_path)
    run = {
        "outbox drain": lambda: _drain(conn, arena),
        "directory sweep": lambda: _directory_sweep(database, location, arena),
        "orphan sweep": lambda: _orphan_sweep(conn, database, location, arena),
    }[operation]()

    lost, went = _rounds(arena, run)

    assert not lost, (
        f"{operation}: {sum(lost.values())} deletions outside the root in {ROUNDS} rounds, "
        f"e.g. {sorted(lost)[:5]}"
    )
    assert went > 0, "the race never deleted anything in the root: it was not exercised"
