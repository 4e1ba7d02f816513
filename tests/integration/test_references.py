"""A file is deleted only when no surviving row of any configured file column names it: two rows
sharing a file, other spellings of the same path (relative, absolute, not normalised), another
spelling of its directory (a symlink inside or outside the root), a forged outbox entry, a row
written while the drain runs. The outbox drain and the orphan sweep agree on what names a file."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from retention.files import outbox, references
from retention.run import runner
from tests.helpers import DAY, make_settings, put, tree

SCHEMA = """
CREATE TABLE photos (id bigserial PRIMARY KEY, taken_at timestamptz NOT NULL, image text);
CREATE INDEX ON photos (taken_at);
CREATE TABLE albums (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL, cover text);
"""


@pytest.fixture
def photos(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute(SCHEMA)
    return conn


def _policies(root: Path, cover_root: Path | None = None) -> list[dict[str, object]]:
    return [
        {
            "table": "photos",
            "timestamp": "taken_at",
            "age": "30d",
            "files": [{"column": "image", "root": str(root)}],
        },
        {
            "table": "albums",
            "timestamp": "created_at",
            "age": "30d",
            "enabled": False,
            "files": [{"column": "cover", "root": str(cover_root or root), "delete": False}],
        },
    ]


def _photo(conn: psycopg.Connection, image: str, *, days: float) -> None:
    conn.execute(
        "INSERT INTO photos (taken_at, image) VALUES (now() - %s * interval '1 day', %s)",
        (days, image),
    )


def _run(database: str, location, root: Path, *, dry_run: bool = False, **kw):
    settings = make_settings(database, tables=_policies(root, **kw))
    return runner.execute(
        settings, location, stages=["tables", "files"], dry_run=dry_run, trigger="cli"
    ).to_json()


@pytest.mark.parametrize(
    "spelling",
    ["shared.png", "{root}/shared.png", "./sub/../shared.png", "{root}//shared.png", "/{root}/."],
)
def test_a_file_two_rows_share_stays_while_one_of_them_survives(
    photos, database, location, tmp_path, spelling
):
    root = tmp_path / "media"
    shared = put(root, "shared.png", age=60 * DAY)
    put(root, "own.png", age=60 * DAY)
    _photo(photos, "shared.png", days=60)
    _photo(photos, "own.png", days=60)
    if spelling == "/{root}/.":
        spelling = "/" + str(root) + "/./shared.png"
    _photo(photos, spelling.format(root=root), days=1)

    preview = _run(database, location, root, dry_run=True)
    first = _run(database, location, root)
    assert first["status"] == "succeeded", first
    assert first["tables"]["photos"]["deleted"] == 2, first["tables"]
    assert first["files"]["deleted"] == 1
    assert first["files"]["referenced"] == 1
    assert tree(root) == {"shared.png"}
    assert photos.execute("SELECT count(*) FROM retention_file_outbox").fetchone() == (0,)
    assert preview["files"]["deleted"] == 0  # nothing queued before the rows go

    photos.execute("UPDATE photos SET taken_at = now() - interval '60 days'")
    second = _run(database, location, root)
    if ".." in spelling or "/./" in spelling:
        # Not a path the drain walks (`..`, or a root spelled with `//`): refused, kept.
        assert second["files"]["refused"] == 1
        assert shared.exists()
    else:
        assert second["files"]["deleted"] == 1
        assert not shared.exists()


def test_a_row_of_another_policy_keeps_the_file(photos, database, location, tmp_path):
    """A `delete = false` column of a disabled policy, with another root spelling the same
    directory, still references the file."""
    root = tmp_path / "media"
    put(root, "cover.png", age=60 * DAY)
    _photo(photos, "cover.png", days=60)
    link = tmp_path / "covers"
    link.symlink_to(root)
    photos.execute(
        "INSERT INTO albums (created_at, cover) VALUES (now(), %s)", (str(link / "cover.png"),)
    )
    result = _run(database, location, root, cover_root=link)
    assert result["files"]["referenced"] == 1
    assert tree(root) == {"cover.png"}


@pytest.mark.parametrize("direction", ["young through the link", "old through the link"])
def test_a_symlinked_directory_inside_the_root_is_the_same_directory(
    photos, database, location, tmp_path, direction
):
    root = tmp_path / "media"
    put(root, "releases/3/a.png", age=60 * DAY)
    (root / "current").symlink_to("releases/3")
    through, real = "current/a.png", "releases/3/a.png"
    old, young = (real, through) if direction == "young through the link" else (through, real)
    _photo(photos, old, days=60)
    _photo(photos, young, days=1)
    result = _run(database, location, root)
    assert result["files"]["referenced"] == 1
    assert result["files"]["deleted"] == 0
    assert (root / "releases/3/a.png").exists()


def test_an_absolute_path_through_a_deploy_link_outside_the_root(
    photos, database, location, tmp_path
):
    """Rows store `/srv/app/current/media/...` (a deploy-style link) while the root is the real
    directory: the drain and the orphan sweep both see the reference."""
    root = tmp_path / "shared" / "media"
    release = tmp_path / "releases" / "7"
    release.mkdir(parents=True)
    (release / "media").symlink_to(root)
    current = tmp_path / "current"
    current.symlink_to(release)
    put(root, "live.png", age=60 * DAY)
    put(root, "old.png", age=60 * DAY)
    _photo(photos, str(current / "media" / "old.png"), days=60)
    _photo(photos, str(current / "media" / "live.png"), days=1)

    drained = _run(database, location, root)
    # The drain walks from the root as configured (or its real path) only: an entry spelled
    # through a link outside it is refused, never followed; the file stays for the sweep.
    assert drained["files"]["refused"] == 1
    assert drained["files"]["deleted"] == 0
    assert tree(root) == {"live.png", "old.png"}

    put(root, "orphan.png", age=60 * DAY)
    settings = make_settings(database, tables=_policies(root), orphans={"enabled": True})
    swept = runner.execute(
        settings, location, stages=["orphans"], dry_run=False, trigger="cli"
    ).to_json()
    assert swept["orphans"]["deleted"] == 2, swept
    assert tree(root) == {"live.png"}


def test_a_forged_entry_for_a_referenced_file_deletes_nothing(photos, conn, tmp_path):
    root = tmp_path / "media"
    live = put(root, "live.png", age=60 * DAY)
    _photo(photos, str(live), days=1)
    conn.execute(
        "INSERT INTO retention_file_outbox (root, path, source) VALUES (%s, 'live.png', 'x'),"
        " (%s, %s, 'x')",
        (str(root), str(root), str(live)),
    )
    settings = make_settings("postgresql:///unused", tables=_policies(root))
    columns = references.resolve(conn, references.references(settings))
    result = outbox.drain(
        conn,
        roots_allowed=outbox.configured_roots(settings),
        columns=columns,
        dry_run=False,
        deadline=time.monotonic() + 600,
    )
    assert result.referenced == 2
    assert result.deleted == 0
    assert live.exists()


@pytest.mark.parametrize("index", ["on the file column", "on the timestamp"])
def test_a_row_written_while_the_drain_runs_keeps_its_file(photos, conn, database, tmp_path, index):
    """The columns are read once per drain; a row written after that is found by each batch's
    recheck through an index (on the column, or on the policy's timestamp for recent rows)."""
    if index == "on the file column":
        photos.execute("CREATE INDEX ON photos (image)")
    root = tmp_path / "media"
    names = [f"f{i:02}.png" for i in range(6)]
    for name in names:
        put(root, name, age=60 * DAY)
    conn.execute(
        "INSERT INTO retention_file_outbox (root, path, source)"
        " SELECT %s, name, 'table:photos.image' FROM unnest(%s::text[]) AS name",
        (str(root), names),
    )
    settings = make_settings(database, tables=_policies(root))
    columns = references.resolve(conn, references.references(settings))
    assert columns[0].recheck is not None
    writer = psycopg.connect(database, autocommit=True)
    written: list[str] = []

    def between_batches() -> bool:
        # Each batch holds one entry: before the third, a row that names the fourth commits.
        if len(written) < 3:
            written.append("")
            if len(written) == 3:
                writer.execute(
                    "INSERT INTO photos (taken_at, image) VALUES (now(), %s)", (names[3],)
                )
        return False

    try:
        result = outbox.drain(
            conn,
            roots_allowed=outbox.configured_roots(settings),
            columns=columns,
            dry_run=False,
            deadline=time.monotonic() + 600,
            batch_size=1,
            should_abort=between_batches,
        )
    finally:
        writer.close()
    assert result.referenced == 1
    assert tree(root) == {names[3]}
