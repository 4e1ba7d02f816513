"""archive_files: the files of a policy's deleted rows are copied into the archive (content-
addressed, with their size and sha256 in the ledger) before the outbox drain unlinks them; a
file a surviving row names is neither copied nor unlinked; a symlink swapped in is not followed;
a file that cannot be copied stays with its entry; verify finds a damaged copy; archive_files
without archive is refused. Real PostgreSQL, real files."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from psycopg import conninfo as libpq
from psycopg import sql

from retention.archive import store
from tests.acceptance.test_privileges import documented_grants
from tests.helpers import (
    add_event,
    execute_tables,
    files_on_disk,
    ids,
    make_schema,
    records_policy,
    run_cli,
    tables_toml,
)

OLD = dt.timedelta(days=40)
YOUNG = dt.timedelta(days=1)


def _unique(media: Path) -> dict[str, bytes]:
    """Give every file under `media` content of its own (so no two copies are the same)."""
    contents = {}
    for path in sorted(p for p in media.rglob("*") if p.is_file()):
        rel = str(path.relative_to(media))
        data = f"{rel}:{uuid.uuid4().hex}".encode() * (1 + len(rel) % 5)
        path.write_bytes(data)
        contents[rel] = data
    return contents


def _policy(media: Path, **overrides):
    return records_policy(media, archive=True, archive_files=True, **overrides)


def _run(database, location, media, archive, *, dry_run=False, stages=("tables", "files")):
    return execute_tables(
        database,
        location,
        [_policy(media)],
        dry_run=dry_run,
        stages=stages,
        archive={"root": str(archive)},
    )


def _outbox(conn):
    return conn.execute(
        "SELECT path, archive, attempts, last_error FROM retention_file_outbox ORDER BY id"
    ).fetchall()


def test_files_are_copied_with_size_and_sha256_then_unlinked(conn, database, location, tmp_path):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    old = [add_event(conn, media, age=OLD) for _ in range(3)]
    young = add_event(conn, media, age=YOUNG)
    contents = _unique(media)
    gone = {
        rel: data
        for rel, data in contents.items()
        if int(rel.split("/")[1].split(".")[0].split("-")[0]) in old
    }
    assert len(gone) == 3 * 4

    plan = _run(database, location, media, archive, dry_run=True)
    assert plan["files"]["archived"] == 0  # nothing queued yet in a dry run's outbox
    assert not archive.exists() or not (archive / "files").exists()
    assert files_on_disk(media) == set(contents)

    done = _run(database, location, media, archive)
    files = done["files"]
    assert files["deleted"] == 12
    assert files["archived"] == 12
    assert files["archived_bytes"] == sum(len(d) for d in gone.values())
    assert files["failed"] == 0
    assert files["pending"] == 0
    assert files_on_disk(media) == set(contents) - set(gone)
    assert ids(conn, "app.events") == {young}

    copies = store.copies(conn)
    assert len(copies) == 12
    assert {c.run_id for c in copies} == {done["run_id"]}
    by_path = {c.path: c for c in copies}
    assert set(by_path) == set(gone)
    for rel, data in gone.items():
        copy = by_path[rel]
        sha = hashlib.sha256(data).hexdigest()
        assert copy.sha256 == sha
        assert copy.bytes == len(data)
        assert copy.root == str(media)
        assert copy.archive_path == f"files/{sha[:2]}/{sha}"
        assert (archive / copy.archive_path).read_bytes() == data
    checks, unrecorded = store.verify_copies(conn, archive)
    assert [c.problem for c in checks] == [None] * 12
    assert unrecorded == []
    assert _outbox(conn) == []
    # No temporary copy is left behind.
    assert not [p for p in (archive / "files").iterdir() if p.name.startswith(".")]


def test_a_dry_run_copies_nothing_and_counts_what_it_would(conn, database, location, tmp_path):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    add_event(conn, media, age=OLD)
    contents = _unique(media)
    # Rows deleted, files queued (archive = true), not drained yet.
    tables = _run(database, location, media, archive, stages=("tables",))
    assert tables["tables"]["app.events"]["files_queued"] == 4
    assert [row[1] for row in _outbox(conn)] == [True] * 4

    dry = _run(database, location, media, archive, dry_run=True, stages=("files",))
    assert dry["files"]["archived"] == 4
    assert dry["files"]["archived_bytes"] == sum(len(d) for d in contents.values())
    assert dry["files"]["deleted"] == 4
    assert files_on_disk(media) == set(contents)
    assert not (archive / "files").exists()
    assert store.copies(conn) == []
    assert len(_outbox(conn)) == 4


def test_a_file_a_surviving_row_names_is_neither_copied_nor_unlinked(
    conn, database, location, tmp_path
):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    shared = "events/shared.jpg"
    add_event(conn, media, age=OLD, image=shared, detections=0, notes=0)
    add_event(conn, media, age=YOUNG, image=shared, detections=0, notes=0)
    (media / shared).parent.mkdir(parents=True, exist_ok=True)
    (media / shared).write_bytes(b"shared by two rows")

    done = _run(database, location, media, archive)
    assert done["tables"]["app.events"]["files_queued"] == 1
    assert done["files"]["referenced"] == 1
    assert done["files"]["archived"] == 0
    assert done["files"]["deleted"] == 0
    assert (media / shared).read_bytes() == b"shared by two rows"
    assert store.copies(conn) == []
    assert not (archive / "files").exists() or not list((archive / "files").rglob("*"))


def test_a_symlink_swapped_in_is_not_followed(conn, database, location, tmp_path):
    media, archive, outside = tmp_path / "media", tmp_path / "archive", tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_bytes(b"outside the root")
    make_schema(conn)
    event = add_event(conn, media, age=OLD, detections=0, notes=0)
    _run(database, location, media, archive, stages=("tables",))
    image = media / f"events/{event}.jpg"
    image.unlink()
    image.symlink_to(secret)

    done = _run(database, location, media, archive, stages=("files",))
    assert done["files"]["archived"] == 0
    assert done["files"]["failed"] == 1
    assert done["files"]["pending"] == 1
    ((_, archived, attempts, error),) = _outbox(conn)
    assert (archived, attempts) == (True, 1)
    assert "symlink" in error
    assert image.is_symlink()
    assert secret.read_bytes() == b"outside the root"
    sha = hashlib.sha256(b"outside the root").hexdigest()
    assert not (archive / "files" / sha[:2] / sha).exists()
    assert store.copies(conn) == []

    # A directory swapped for a symlink leading out of the root: refused, nothing copied.
    (outside / "events").mkdir()
    (outside / "events" / f"{event}.jpg").write_bytes(b"outside too")
    image.unlink()
    (media / "events").rmdir()
    (media / "events").symlink_to(outside / "events")
    again = _run(database, location, media, archive, stages=("files",))
    assert again["files"]["refused"] == 1
    assert again["files"]["archived"] == 0
    assert (outside / "events" / f"{event}.jpg").read_bytes() == b"outside too"
    assert store.copies(conn) == []


def test_a_file_that_cannot_be_copied_stays_with_its_entry(conn, database, location, tmp_path):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    event = add_event(conn, media, age=OLD, detections=1, notes=0)
    contents = _unique(media)
    _run(database, location, media, archive, stages=("tables",))
    # The archive cannot take copies: its files/ is a plain file (a full or read-only disk, for
    # the drain); and one file is a FIFO, which is not a regular file.
    archive.mkdir(exist_ok=True)
    (archive / "files").write_bytes(b"in the way")
    crop = media / f"crops/{event}-0.png"
    crop.unlink()
    os.mkfifo(crop)

    done = _run(database, location, media, archive, stages=("files",))
    assert done["files"]["failed"] == 2
    assert done["files"]["pending"] == 2
    assert done["files"]["archived"] == 0
    assert done["files"]["deleted"] == 0
    errors = {row[0]: row[3] for row in _outbox(conn)}
    assert "could not copy into the archive" in errors[f"events/{event}.jpg"]
    assert "not a regular file" in errors[f"crops/{event}-0.png"]
    assert (media / f"events/{event}.jpg").read_bytes() == contents[f"events/{event}.jpg"]
    assert crop.exists()

    # Once the archive takes copies again, the next drain copies and unlinks the file.
    (archive / "files").unlink()
    crop.unlink()
    retried = _run(database, location, media, archive, stages=("files",))
    assert retried["files"]["archived"] == 1
    assert retried["files"]["missing"] == 1
    assert retried["files"]["pending"] == 0
    assert not (media / f"events/{event}.jpg").exists()
    (copy,) = store.copies(conn)
    assert (archive / copy.archive_path).read_bytes() == contents[f"events/{event}.jpg"]


def _config(tmp_path: Path, media: Path, root: Path, **policy) -> Path:
    config = tmp_path / "retention.toml"
    config.write_text(
        f'[archive]\nroot = "{root}"\n\n' + tables_toml(records_policy(media, **policy))
    )
    return config


def test_verify_and_list_show_the_copies_and_a_damaged_one(conn, database, tmp_path):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    add_event(conn, media, age=OLD, detections=1, notes=0)
    _unique(media)
    config = _config(tmp_path, media, archive, archive=True, archive_files=True)
    run = run_cli("--config", str(config), "run", "--json", database=database)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["files"]["archived"] == 2

    listed = run_cli("--config", str(config), "archive", "list", "--json", database=database)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert len(data["files"]) == 1  # the rows' archive file
    assert len(data["copies"]) == 2
    text = run_cli("--config", str(config), "archive", "list", database=database)
    assert "copies of deleted rows' files" in text.stdout

    verified = run_cli("--config", str(config), "archive", "verify", database=database)
    assert verified.returncode == 0, verified.stderr
    assert "3 files checked (2 copies of deleted rows' files), 0 failed" in verified.stdout

    damaged = archive / data["copies"][0]["archive_path"]
    damaged.write_bytes(damaged.read_bytes()[:-1] + b"!")
    broken = run_cli("--config", str(config), "archive", "verify", "--json", database=database)
    assert broken.returncode == 1
    report = json.loads(broken.stdout)
    assert [f["path"] for f in report["failed"]] == [data["copies"][0]["archive_path"]]
    assert "sha256 differs" in report["failed"][0]["problem"]
    stray = archive / "files" / "ab" / ("ab" + "0" * 62)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"no ledger row")
    again = run_cli("--config", str(config), "archive", "verify", "--json", database=database)
    assert json.loads(again.stdout)["unrecorded_copies"] == [str(stray.relative_to(archive))]


def test_archive_files_without_archive_is_refused(conn, database, tmp_path):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    event = add_event(conn, media, age=OLD)
    before = files_on_disk(media)
    config = _config(tmp_path, media, archive, archive_files=True)
    result = run_cli("--config", str(config), "run", database=database)
    assert result.returncode == 2
    assert "archive_files" in result.stderr
    assert "tables.0.archive_files" in result.stderr
    assert "Traceback" not in result.stderr
    assert ids(conn, "app.events") == {event}
    assert files_on_disk(media) == before
    assert not archive.exists()


def test_archive_files_with_only_the_documented_grants(conn, database, tmp_path):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    add_event(conn, media, age=OLD, detections=1, notes=1)
    role = f"retention_plain_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        for grant in documented_grants():
            conn.execute(grant.rstrip(";").replace(" TO retention", f" TO {role}"))
        for grant in (
            "GRANT USAGE ON SCHEMA app TO {role}",
            "GRANT SELECT, DELETE ON app.events, app.detections, app.notes TO {role}",
            "GRANT UPDATE (id) ON app.events TO {role}",
        ):
            conn.execute(sql.SQL(grant).format(role=sql.Identifier(role)))
        params = libpq.conninfo_to_dict(database)
        params["user"] = role
        config = _config(tmp_path, media, archive, archive=True, archive_files=True)
        result = run_cli(
            "--config", str(config), "run", "--json", database=libpq.make_conninfo(**params)
        )
        assert result.returncode == 0, result.stderr
        files = json.loads(result.stdout)["files"]
        assert files["archived"] == 3
        assert files["failed"] == 0
        assert files_on_disk(media) == set()
        assert len(store.copies(conn)) == 3
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_without_archive_files_nothing_is_copied(conn, database, location, tmp_path):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    add_event(conn, media, age=OLD)
    done = execute_tables(
        database,
        location,
        [records_policy(media, archive=True)],
        archive={"root": str(archive)},
    )
    assert done["files"]["deleted"] == 4
    assert done["files"]["archived"] == 0
    assert not (archive / "files").exists()
    assert store.copies(conn) == []


def test_a_file_copied_but_not_unlinked_is_copied_again_under_the_same_record(
    conn, database, location, tmp_path
):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    event = add_event(conn, media, age=OLD, detections=0, notes=0)
    contents = _unique(media)
    image = media / f"events/{event}.jpg"
    _run(database, location, media, archive, stages=("tables",))
    if (
        subprocess.run(["chattr", "+i", str(image)], capture_output=True, check=False).returncode
        != 0
    ):
        pytest.skip("the immutable attribute is not supported here")
    try:
        stuck = _run(database, location, media, archive, stages=("files",))
    finally:
        subprocess.run(["chattr", "-i", str(image)], check=True)
    assert stuck["files"]["archived"] == 1
    assert stuck["files"]["failed"] == 1
    assert stuck["files"]["deleted"] == 0
    ((_, _, attempts, error),) = _outbox(conn)
    assert attempts == 1
    assert error.startswith("copied; ")
    (first,) = store.copies(conn)

    done = _run(database, location, media, archive, stages=("files",))
    assert done["files"]["archived"] == 1
    assert done["files"]["deleted"] == 1
    assert not image.exists()
    (again,) = store.copies(conn)
    assert again.id == first.id
    assert again.run_id == done["run_id"]
    assert (archive / again.archive_path).read_bytes() == contents[f"events/{event}.jpg"]
