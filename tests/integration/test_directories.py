"""`[[directories]]` sweeps in-process on real files: ages, globs, empty directories, symlinks,
failed deletions through the outbox."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from retention import errors
from retention.engine import ledger
from retention.run import runner
from tests.helpers import HOUR, make_settings, put, tree

DAY = 24 * HOUR


def sweep(database: str, location, *policies: dict[str, object], dry_run: bool = False):
    settings = make_settings(database, directories=list(policies))
    return runner.execute(
        settings, location, stages=["directories"], dry_run=dry_run, trigger="cli"
    ).to_json()


def test_old_matching_files_go_excluded_young_and_other_files_stay(database, location, tmp_path):
    root = tmp_path / "exports"
    for rel in ("a.csv", "x/b.csv", "x/y/c.csv", "keep/d.csv", "notes.txt"):
        put(root, rel, age=3 * DAY)
    put(root, "fresh.csv", age=HOUR)
    policy = {"root": str(root), "age": "2d", "include": ["*.csv"], "exclude": ["keep/*"]}

    summary = sweep(database, location, policy)

    assert tree(root) == {"keep/d.csv", "notes.txt", "fresh.csv"}
    section = summary["directories"]
    assert (section["deleted"], section["bytes"], section["failed"]) == (3, 30, 0)
    mine = section["roots"][str(root)]
    assert mine["listed"] == 3
    assert "dirs_removed" not in mine
    assert sorted(mine["sample"]) == sorted(
        str(root / r) for r in ("a.csv", "x/b.csv", "x/y/c.csv")
    )
    assert (root / "x" / "y").is_dir(), "directories stay unless remove_empty_dirs"


def test_dry_run_lists_what_the_real_sweep_deletes_and_touches_nothing(
    database, location, tmp_path
):
    root = tmp_path / "tmp-files"
    for i in range(30):
        put(root, f"d{i % 3}/f{i}.tmp", age=DAY * (1.02 + i / 10), data=b"t" * i)
    policy = {"root": str(root), "age": "36h", "remove_empty_dirs": True}
    before = tree(root)

    dry = sweep(database, location, policy, dry_run=True)
    assert tree(root) == before
    real = sweep(database, location, policy)

    would, went = dry["directories"]["roots"][str(root)], real["directories"]["roots"][str(root)]
    assert (would["deleted"], would["bytes"]) == (went["deleted"], went["bytes"])
    assert would["deleted"] == 25
    assert would["dirs_removed"] == went["dirs_removed"] == 0
    gone = {str(root / rel) for rel in before - tree(root)}
    assert len(gone) == went["deleted"]
    assert set(would["sample"]) <= gone
    assert would["sample"] == went["sample"]


def test_remove_empty_dirs_removes_what_the_sweep_emptied_never_the_root(
    database, location, tmp_path
):
    root = tmp_path / "cache"
    put(root, "a/b/c/old.bin", age=3 * DAY)
    put(root, "a/b/other-old.bin", age=3 * DAY)
    put(root, "a/keep/new.bin", age=HOUR)
    put(root, "top-old.bin", age=3 * DAY)
    (root / "fresh-empty").mkdir()
    old_empty = root / "old-empty"
    old_empty.mkdir()
    when = time.time() - 3 * DAY
    os.utime(old_empty, (when, when))
    policy = {"root": str(root), "age": "1d", "remove_empty_dirs": True}

    dry = sweep(database, location, policy, dry_run=True)
    assert (root / "a/b/c").is_dir()
    assert old_empty.is_dir()
    real = sweep(database, location, policy)

    remaining = {str(p.relative_to(root)) for p in root.rglob("*")}
    assert remaining == {"a", "a/keep", "a/keep/new.bin", "fresh-empty"}
    assert root.is_dir()
    mine = real["directories"]["roots"][str(root)]
    assert mine["dirs_removed"] == dry["directories"]["roots"][str(root)]["dirs_removed"] == 3

    (root / "a/keep/new.bin").unlink()
    again = sweep(database, location, policy)
    assert again["directories"]["roots"][str(root)]["dirs_removed"] == 0
    assert (root / "a/keep").is_dir(), "emptied by someone else just now: younger than age"


def test_symlinks_are_not_followed(database, location, tmp_path):
    root = tmp_path / "spool"
    outside = tmp_path / "outside"
    put(outside, "keep/me.txt", age=9 * DAY)
    put(root, "old.txt", age=9 * DAY)
    (root / "escape").symlink_to(outside / "keep")
    (root / "file-link").symlink_to(outside / "keep" / "me.txt")
    sweep(database, location, {"root": str(root), "age": "1d", "remove_empty_dirs": True})
    assert tree(outside) == {"keep/me.txt"}
    assert tree(root) == {"escape", "file-link"}


def test_disabled_policies_are_skipped_and_the_ledger_has_one_section_per_root(
    conn, database, location, tmp_path
):
    one, two = tmp_path / "one", tmp_path / "two"
    put(one, "old.log", age=3 * DAY)
    put(two, "old.log", age=3 * DAY)
    summary = sweep(
        database,
        location,
        {"root": str(one), "age": "1d"},
        {"root": str(two), "age": "1d", "enabled": False},
    )
    assert tree(one) == set()
    assert tree(two) == {"old.log"}
    row = ledger.get(conn, summary["run_id"])
    assert row is not None
    assert list(row["summary"]["directories"]["roots"]) == [str(one)]
    assert row["summary"]["directories"]["deleted"] == 1


def test_a_failed_file_is_retried_by_the_next_sweep_with_its_age_check(
    conn, database, location, tmp_path
):
    """A file that could not be deleted is not queued for a blind retry: when a fresh file is
    written at its name before the next run, the next run keeps it (it is not old enough)."""
    root = tmp_path / "exports"
    stuck = put(root, "stuck.csv", age=3 * DAY)
    put(root, "free.csv", age=3 * DAY)
    policy = {"root": str(root), "age": "1d"}
    try:
        subprocess.run(["chattr", "+i", str(stuck)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"chattr is not available here: {exc}")
    try:
        first = sweep(database, location, policy)
    finally:
        subprocess.run(["chattr", "-i", str(stuck)], check=True)
    assert first["directories"]["failed"] == 1
    assert first["directories"]["deleted"] == 1
    assert conn.execute("SELECT count(*) FROM retention_file_outbox").fetchone() == (0,)

    stuck.unlink()
    stuck.write_text("written again today\n")
    settings = make_settings(database, directories=[policy])
    again = runner.execute(
        settings,
        location,
        stages=runner.enabled_stages(settings, None),
        dry_run=False,
        trigger="cli",
    ).to_json()
    assert again["status"] == "succeeded", again
    assert again["directories"]["deleted"] == 0
    assert stuck.read_text() == "written again today\n"

    os.utime(stuck, (time.time() - 3 * DAY,) * 2)
    old = runner.execute(
        settings,
        location,
        stages=runner.enabled_stages(settings, None),
        dry_run=False,
        trigger="cli",
    ).to_json()
    assert old["directories"]["deleted"] == 1
    assert tree(root) == set()


def test_a_directory_that_overlaps_a_table_storage_root_is_flagged(database, location, tmp_path):
    root = tmp_path / "media"
    put(root, "cache/old.bin", age=3 * DAY)
    settings = make_settings(
        database,
        tables=[
            {
                "table": "attachments",
                "timestamp": "created_at",
                "files": [{"column": "path", "root": str(root)}],
            }
        ],
        directories=[{"root": str(root / "cache"), "age": "1d"}],
    )
    summary = runner.execute(
        settings, location, stages=["directories"], dry_run=True, trigger="cli"
    ).to_json()
    warnings = summary["directories"]["roots"][str(root / "cache")]["warnings"]
    assert "attachments.path" in warnings[0]
    assert "overlaps" in warnings[0]


def test_a_missing_second_root_stops_the_stage_before_anything_is_deleted(
    conn, database, location, tmp_path
):
    one = tmp_path / "one"
    put(one, "old.log", age=3 * DAY)
    settings = make_settings(
        database,
        directories=[
            {"root": str(one), "age": "1d"},
            {"root": str(tmp_path / "gone"), "age": "1d"},
        ],
    )
    with pytest.raises(errors.ConfigError, match="does not exist"):
        runner.execute(
            settings, location, stages=["directories"], dry_run=False, trigger="cli"
        ).to_json()
    assert tree(one) == {"old.log"}
    assert conn.execute("SELECT status FROM retention_runs").fetchall() == [("failed",)]
