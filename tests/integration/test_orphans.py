"""The orphan sweep in-process on real files: what goes and what stays, grace, symlinks, a file
referenced after the listing, undeletable files through the outbox."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from retention.files import orphans, references
from retention.run import runner
from tests.helpers import HOUR, make_settings, put, refer, run_orphans, tree
from tests.helpers import orphan_policies as policies


def test_unreferenced_old_files_go_referenced_and_young_ones_stay(
    app, database, location, tmp_path
):
    root = tmp_path / "media"
    for rel in (
        "a/relative.jpg",
        "absolute.jpg",
        "b/dotted.jpg",
        "thumbs/t1.png",
        "avatar.png",
        "old-orphan.bin",
        "deep/er/old-orphan.bin",
        "thumbs/old-thumb-orphan.png",
        "spaced name ü.txt",
    ):
        put(root, rel)
    put(root, "young-orphan.bin", age=60)
    refer(app, "a/relative.jpg", str(root / "absolute.jpg"), "./b/../b//dotted.jpg")
    refer(app, "t1.png", table="thumbnails")
    refer(app, "avatar.png", table="avatars")
    refer(app, "spaced name ü.txt", None)
    refer(app, str(tmp_path / "elsewhere" / "x.jpg"), "../escape.jpg")

    summary = run_orphans(database, location, root, dry_run=False)

    assert tree(root) == {
        "a/relative.jpg",
        "absolute.jpg",
        "b/dotted.jpg",
        "thumbs/t1.png",
        "avatar.png",
        "young-orphan.bin",
        "spaced name ü.txt",
    }
    section = summary["orphans"]
    assert section["deleted"] == 3
    assert section["bytes"] == 30
    assert section["failed"] == 0
    mine = section["roots"][str(root)]
    assert mine["files"] == 10
    assert mine["older_than_grace"] == 9
    assert mine["referenced_old"] == 6
    assert sorted(mine["sample"]) == sorted(
        str(root / rel)
        for rel in ("old-orphan.bin", "deep/er/old-orphan.bin", "thumbs/old-thumb-orphan.png")
    )
    assert list(section["roots"]) == [str(root)], "the nested thumbs root is swept with its parent"


def test_grace_is_configurable_and_the_stage_is_off_by_default(app, database, location, tmp_path):
    root = tmp_path / "media"
    put(root, "two-hours.bin", age=2 * HOUR)
    put(root, "ten-hours.bin", age=10 * HOUR)
    settings = make_settings(database, **policies(root))
    assert "orphans" in runner.enabled_stages(settings, None)
    off = {**policies(root), "orphans": {}}
    assert "orphans" not in runner.enabled_stages(make_settings(database, **off), None)

    summary = run_orphans(database, location, root, dry_run=False, grace="5h")
    assert summary["orphans"]["deleted"] == 1
    assert tree(root) == {"two-hours.bin"}


def test_symlinks_are_never_followed_nor_their_targets_deleted(app, database, location, tmp_path):
    root = tmp_path / "media"
    outside = tmp_path / "outside"
    put(outside, "precious.db")
    put(outside, "dir/precious.txt")
    root.mkdir()
    (root / "out-dir").symlink_to(outside / "dir")
    (root / "out-file").symlink_to(outside / "precious.db")
    put(root, "real/kept-through-alias.jpg")
    put(root, "target.jpg")
    put(root, "real/orphan.jpg")
    (root / "alias").symlink_to(root / "real")
    (root / "link.jpg").symlink_to(root / "target.jpg")
    refer(app, "alias/kept-through-alias.jpg", "link.jpg")

    dry = run_orphans(database, location, root, dry_run=True)
    real = run_orphans(database, location, root, dry_run=False)

    assert tree(outside) == {"precious.db", "dir/precious.txt"}
    assert tree(root) == {
        "out-dir",
        "out-file",
        "alias",
        "link.jpg",
        "target.jpg",
        "real/kept-through-alias.jpg",
    }
    assert dry["orphans"]["roots"][str(root)]["sample"] == [str(root / "real/orphan.jpg")]
    assert real["orphans"]["deleted"] == dry["orphans"]["deleted"] == 1


def test_a_file_referenced_after_the_listing_is_kept(app, database, tmp_path):
    app.execute("CREATE INDEX ON attachments (created_at)")
    app.execute("CREATE INDEX ON thumbnails (file)")
    root = tmp_path / "media"
    root.mkdir()
    settings = make_settings(database, **policies(root))
    columns = references.resolve(app, references.references(settings))
    assert [(c.ref.table, c.recheck is not None) for c in columns] == [
        ("attachments", True),
        ("thumbnails", True),
        ("avatars", False),
    ]
    since = app.execute("SELECT now() - interval '1 hour'").fetchone()[0]
    recheck = orphans._recheck(columns, root, root, since)
    refer(app, str(root / "late.jpg"))
    refer(app, "new.png", table="thumbnails")
    refer(app, "avatar.png", table="avatars")
    app.execute(
        "INSERT INTO attachments (created_at, path) VALUES (now() - interval '2 hours', 'old.jpg')"
    )
    with app.cursor() as cur:
        kept = recheck(
            cur,
            [b"late.jpg", b"thumbs/new.png", b"other.jpg", b"new.png", b"old.jpg", b"avatar.png"],
        )
    assert kept == {b"late.jpg", b"thumbs/new.png"}, "old rows were matched by the listing"


def _chattr(flag: str, path: Path) -> None:
    try:
        subprocess.run(["chattr", flag, str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"chattr {flag} is not available here: {exc}")


def test_a_file_that_cannot_be_deleted_stays_and_the_next_sweep_checks_it_again(
    app, database, location, tmp_path
):
    """A failed orphan is not queued for a blind retry: it stays, and the next sweep, which looks
    at its references again, decides. Here a row references it by then: it is kept."""
    root = tmp_path / "media"
    stuck = put(root, "stuck.bin")
    put(root, "free.bin")
    _chattr("+i", stuck)
    try:
        first = run_orphans(database, location, root, dry_run=False)
        second = run_orphans(database, location, root, dry_run=False)
    finally:
        _chattr("-i", stuck)
    assert first["orphans"]["failed"] == second["orphans"]["failed"] == 1
    assert first["orphans"]["deleted"] == 1
    assert "stuck.bin" in first["orphans"]["roots"][str(root)]["errors"][0]
    assert app.execute("SELECT count(*) FROM retention_file_outbox").fetchone() == (0,)

    refer(app, str(root / "stuck.bin"))
    settings = make_settings(database, **policies(root))
    kept = runner.execute(
        settings,
        location,
        stages=["files", "orphans"],
        dry_run=False,
        trigger="cli",
    ).to_json()
    assert kept["status"] == "succeeded", kept
    assert tree(root) == {"stuck.bin"}

    app.execute("DELETE FROM attachments")
    gone = run_orphans(database, location, root, dry_run=False)
    assert gone["orphans"]["deleted"] == 1
    assert tree(root) == set()
