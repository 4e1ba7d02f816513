"""The file outbox: queued with the rows, unlinked after commit, failures kept and retried,
escapes refused. Real files, real PostgreSQL."""

from __future__ import annotations

import time

import pytest

from retention.files import outbox
from tests.helpers import make_file as _make
from tests.helpers import outbox_entries as _entries
from tests.helpers import queue_files as _queue

FAR = time.monotonic() + 3600


def test_enqueue_skips_empty_paths(conn, tmp_path):
    assert _queue(conn, tmp_path, ["a", "", "b"]) == 2
    assert [e[0] for e in _entries(conn)] == ["a", "b"]


def test_drain_deletes_files_counts_bytes_and_missing(conn, tmp_path):
    root = tmp_path / "store"
    _make(root, "a/one.bin", 100)
    _make(root, "a/two.bin", 50)
    absolute = _make(root, "b/three.bin", 7)
    _queue(conn, root, ["a/one.bin", "a/two.bin", str(absolute), "gone.bin", "nodir/x.bin"])

    preview = outbox.drain(conn, roots_allowed=[root], dry_run=True, deadline=FAR).to_json()
    assert preview["deleted"] == 3
    assert preview["bytes"] == 157
    assert preview["missing"] == 2
    assert (root / "a/one.bin").exists()
    assert len(_entries(conn)) == 5

    result = outbox.drain(conn, roots_allowed=[root], dry_run=False, deadline=FAR).to_json()
    assert result == {
        "deleted": 3,
        "bytes": 157,
        "failed": 0,
        "pending": 0,
        "refused": 0,
        "missing": 2,
        "referenced": 0,
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
    result = outbox.drain(
        conn, roots_allowed=[root], dry_run=False, deadline=FAR, batch_size=40
    ).to_json()
    assert result["deleted"] == len(queued)
    assert result["failed"] == 0
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

    result = outbox.drain(conn, roots_allowed=[root], dry_run=False, deadline=FAR).to_json()

    assert result["refused"] == 3
    assert result["deleted"] == 1
    assert result["pending"] == 0
    assert outside.exists()
    assert [(e[0], e[3]) for e in _entries(conn)] == [
        ("../outside/secret.txt", True),
        (str(outside), True),
        ("link/secret.txt", True),
    ]
    again = outbox.drain(conn, roots_allowed=[root], dry_run=False, deadline=FAR).to_json()
    assert again["refused"] == 0
    assert outside.exists()
    assert outbox.backlog(conn)["refused"] == 3


def test_drain_stops_at_deadline_and_resumes(conn, tmp_path):
    root = tmp_path / "store"
    names = [f"f{i}" for i in range(30)]
    for name in names:
        _make(root, name)
    _queue(conn, root, names)

    stopped = outbox.drain(
        conn, roots_allowed=[root], dry_run=False, deadline=time.monotonic() - 1
    ).to_json()
    assert stopped["stopped"] == "time budget spent"
    assert stopped["pending"] == 30

    small = outbox.drain(
        conn, roots_allowed=[root], dry_run=False, deadline=FAR, batch_size=7
    ).to_json()
    assert small["deleted"] == 30
    assert small["pending"] == 0
    assert list(root.iterdir()) == []


@pytest.mark.parametrize("stored", ["", ".", "a/..", "a/"])
def test_non_file_paths_are_refused(conn, tmp_path, stored):
    root = tmp_path / "store"
    root.mkdir()
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "INSERT INTO retention_file_outbox (root, path, source) VALUES (%s, %s, 'test')",
            (str(root), stored),
        )
    result = outbox.drain(conn, roots_allowed=[root], dry_run=False, deadline=FAR).to_json()
    assert result["refused"] == 1
    assert root.is_dir()


def test_an_entry_naming_a_root_the_settings_do_not_have_is_refused(conn, tmp_path):
    """The outbox is a table a database writer may fill: an entry naming `/` (or any root the
    settings do not have, or another spelling of one through a symlink) never deletes anything."""
    victim_dir = tmp_path / "victims"
    victim_dir.mkdir()
    victim = victim_dir / "victim"
    victim.write_bytes(b"keep")
    root = tmp_path / "store"
    root.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(root)
    (root / "own.bin").write_bytes(b"x")
    forged = [
        ("/", str(victim)[1:]),
        (str(victim_dir), "victim"),
        (str(alias), "own.bin"),
        (str(root) + "/sub/..", "../victims/victim"),
    ]
    for forged_root, path in forged:
        conn.execute(
            "INSERT INTO retention_file_outbox (root, path, source) VALUES (%s, %s, 'x')",
            (forged_root, path),
        )
    result = outbox.drain(conn, roots_allowed=[root], dry_run=False, deadline=FAR).to_json()
    assert result["deleted"] == 0
    assert result["refused"] == len(forged)
    assert victim.read_bytes() == b"keep"
    assert (root / "own.bin").exists()
    problems = outbox.backlog(conn)["problems"]
    assert any("not a root of the settings" in (p["error"] or "") for p in problems)
