"""The file outbox: queued with the rows, unlinked after commit, failures kept and retried,
escapes refused. Real files, real PostgreSQL, the real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from retention.files import outbox
from tests.conftest import run_cli

FAR = time.monotonic() + 3600


def _queue(conn: psycopg.Connection, root: Path, names: list[str], source: str = "test") -> int:
    with conn.transaction(), conn.cursor() as cur:
        return outbox.enqueue(cur, [(str(root), name, source) for name in names], None)


def _entries(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT path, attempts, last_error IS NOT NULL, refused FROM retention_file_outbox "
        "ORDER BY id"
    ).fetchall()


def _make(root: Path, name: str, size: int = 10) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@contextlib.contextmanager
def undeletable(path: Path) -> Iterator[str]:
    """Make `path` impossible to unlink, even for root: the immutable attribute when the
    filesystem supports it, else replace the file with a non-empty directory."""
    if (
        shutil.which("chattr")
        and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    ):
        try:
            yield "immutable"
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")
    try:
        yield "directory"
    finally:
        shutil.rmtree(path)


def test_enqueue_skips_empty_paths(conn, tmp_path):
    assert _queue(conn, tmp_path, ["a", "", "b"]) == 2
    assert [e[0] for e in _entries(conn)] == ["a", "b"]


def test_drain_deletes_files_counts_bytes_and_missing(conn, tmp_path):
    root = tmp_path / "store"
    _make(root, "a/one.bin", 100)
    _make(root, "a/two.bin", 50)
    absolute = _make(root, "b/three.bin", 7)
    _queue(conn, root, ["a/one.bin", "a/two.bin", str(absolute), "gone.bin", "nodir/x.bin"])

    preview = outbox.drain(conn, dry_run=True, deadline=FAR)
    assert preview["deleted"] == 3 and preview["bytes"] == 157 and preview["missing"] == 2
    assert (root / "a/one.bin").exists() and len(_entries(conn)) == 5

    result = outbox.drain(conn, dry_run=False, deadline=FAR)
    assert result == {
        "deleted": 3,
        "bytes": 157,
        "failed": 0,
        "pending": 0,
        "refused": 0,
        "missing": 2,
        "stopped": None,
    }
    assert not any(p.is_file() for p in root.rglob("*"))
    assert _entries(conn) == []


@pytest.mark.parametrize("layout", ["grouped", "interleaved"])
def test_drain_over_more_directories_than_descriptors_it_keeps_open(
    conn, tmp_path, monkeypatch, layout
):
    """Batches spanning more directories than the drain keeps open, split between two threads:
    every queued file goes with its bytes counted, files next to them that were not queued stay."""
    monkeypatch.setattr(outbox, "OPEN_DIRECTORIES", 6)
    root = tmp_path / "store"
    queued = [f"d{d:02}/f{f}.jpg" for d in range(25) for f in range(7)]
    if layout == "interleaved":
        queued.sort(key=lambda name: name.split("/")[1])
    for index, name in enumerate(queued):
        _make(root, name, index % 5 + 1)
    bystanders = [_make(root, f"d{d:02}/keep.jpg") for d in range(25)]
    _queue(conn, root, queued)
    result = outbox.drain(conn, dry_run=False, deadline=FAR, batch_size=40)
    assert result["deleted"] == len(queued) and result["failed"] == 0
    assert result["bytes"] == sum(index % 5 + 1 for index in range(len(queued)))
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg")) == sorted(
        p.relative_to(root).as_posix() for p in bystanders
    )
    assert _entries(conn) == []


def test_escaping_paths_are_refused_and_kept(conn, tmp_path):
    root = tmp_path / "store"
    outside = _make(tmp_path, "outside/secret.txt")
    _make(root, "ok.txt")
    (root / "link").symlink_to(outside.parent, target_is_directory=True)
    _queue(conn, root, ["../outside/secret.txt", str(outside), "link/secret.txt", "ok.txt"])

    result = outbox.drain(conn, dry_run=False, deadline=FAR)

    assert result["refused"] == 3 and result["deleted"] == 1 and result["pending"] == 0
    assert outside.exists()
    assert [(e[0], e[3]) for e in _entries(conn)] == [
        ("../outside/secret.txt", True),
        (str(outside), True),
        ("link/secret.txt", True),
    ]
    again = outbox.drain(conn, dry_run=False, deadline=FAR)
    assert again["refused"] == 0 and outside.exists()
    assert outbox.backlog(conn)["refused"] == 3


def test_undeletable_file_is_kept_retried_and_reported(conn, tmp_path, database):
    root = tmp_path / "store"
    stuck = _make(root, "stuck.bin")
    _make(root, "fine.bin")
    _queue(conn, root, ["stuck.bin", "fine.bin"])

    with undeletable(stuck):
        first = outbox.drain(conn, dry_run=False, deadline=FAR)
        assert first["failed"] == 1 and first["deleted"] == 1 and first["pending"] == 1
        assert stuck.exists()
        second = outbox.drain(conn, dry_run=False, deadline=FAR)
        assert second["failed"] == 1
        row = conn.execute("SELECT attempts, last_error FROM retention_file_outbox").fetchone()
        assert row[0] == 2 and row[1]

        status = run_cli("status", "--json", database=database)
        assert status.returncode == 0, status.stderr
        entries = json.loads(status.stdout)["outbox"]
        assert entries["pending"] == 1 and entries["failed"] == 1
        assert entries["problems"][0]["path"] == "stuck.bin"
        assert entries["problems"][0]["attempts"] == 2

    third = run_cli("run", "--only", "files", "--json", database=database)
    assert third.returncode == 0, third.stderr
    summary = json.loads(third.stdout)["files"]
    assert summary["deleted"] == 1 and summary["failed"] == 0 and summary["pending"] == 0
    assert not os.path.lexists(stuck)
    assert _entries(conn) == []


def test_drain_stops_at_deadline_and_resumes(conn, tmp_path):
    root = tmp_path / "store"
    names = [f"f{i}" for i in range(30)]
    for name in names:
        _make(root, name)
    _queue(conn, root, names)

    stopped = outbox.drain(conn, dry_run=False, deadline=time.monotonic() - 1)
    assert stopped["stopped"] == "time budget spent" and stopped["pending"] == 30

    small = outbox.drain(conn, dry_run=False, deadline=FAR, batch_size=7)
    assert small["deleted"] == 30 and small["pending"] == 0
    assert list(root.iterdir()) == []


def test_concurrent_drains_one_drains_the_others_step_aside(conn, database, tmp_path):
    root = tmp_path / "store"
    names = [f"d{i // 100}/f{i}" for i in range(600)]
    for name in names:
        _make(root, name, 1)
    _queue(conn, root, names)
    procs = [
        subprocess.Popen(
            ["python", "-c", _DRAIN_SCRIPT, database], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(r["deleted"] for r in results) + sum(r["missing"] for r in results) == 600
    assert sum(r["deleted"] for r in results) >= 1
    assert _entries(conn) == []
    assert not any(p.is_file() for p in root.rglob("*"))


_DRAIN_SCRIPT = """
import json, sys, time, psycopg
from retention.files import outbox
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    print(json.dumps(outbox.drain(conn, dry_run=False, deadline=time.monotonic() + 60,
                                 batch_size=50)))
"""


@pytest.mark.parametrize("stored", ["", ".", "a/..", "a/"])
def test_non_file_paths_are_refused(conn, tmp_path, stored):
    root = tmp_path / "store"
    root.mkdir()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO retention_file_outbox (root, path, source) VALUES (%s, %s, 'test')",
            (str(root), stored),
        )
    result = outbox.drain(conn, dry_run=False, deadline=FAR)
    assert result["refused"] == 1 and root.is_dir()
