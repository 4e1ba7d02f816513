"""Archive before delete, in-process: what a run deletes is in the archive (jobs with their
events, table rows with their children), recorded in the ledger, verified, restored equal to
before; dry runs write nothing. Real PostgreSQL, real files."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from retention.archive import restore, store
from retention.run import runner
from tests.helpers import add_event, make_schema, make_settings, records_policy, seed_job

OLD = dt.timedelta(days=40)
JOBS_TABLES = ("procrastinate_jobs", "procrastinate_events")
APP_TABLES = ("app.events", "app.detections", "app.notes")


def _dump(conn, tables):
    """Every row of each table, as text, in id order: what "equal to before" compares."""
    return {t: conn.execute(f"SELECT t::text FROM {t} t ORDER BY id").fetchall() for t in tables}


def _run(database, location, root, *, dry_run=False, stages=("jobs",), **kw):
    settings = make_settings(
        database,
        jobs={"succeeded": "30d", "archive": True},
        archive={"root": str(root)},
        batch_size=3,
        **kw,
    )
    return runner.execute(
        settings, location, stages=list(stages), dry_run=dry_run, trigger="cli"
    ).to_json()


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl.gz"))


def test_jobs_round_trip_archive_delete_restore(conn, database, location, tmp_path):
    root = tmp_path / "archive"
    old = [seed_job(conn, status="succeeded", finished_ago=OLD) for _ in range(7)]
    young = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=1))
    before = _dump(conn, JOBS_TABLES)

    plan = _run(database, location, root, dry_run=True)["jobs"]
    assert plan["deleted"] == 7
    assert plan["archive"]["rows"] == 7 + 3 * 7
    assert not root.exists() or _files(root) == []

    done = _run(database, location, root)
    jobs = done["jobs"]
    assert jobs["deleted"] == 7
    assert jobs["archive"] == {
        "files": 3,
        "rows": 28,
        "bytes": sum(p.stat().st_size for p in _files(root)),
    }
    left = {r[0] for r in conn.execute("SELECT id FROM procrastinate_jobs")}
    assert left == {young}
    assert conn.execute("SELECT count(*) FROM procrastinate_events").fetchone()[0] == 3

    recorded = store.recorded(conn)
    assert {r.run_id for r in recorded} == {done["run_id"]}
    assert sum(r.rows for r in recorded) == 28
    checks, unrecorded = store.verify(conn, root)
    assert [c.problem for c in checks] == [None] * 3
    assert unrecorded == []
    archived = [row for f in _files(root) for row in store.rows(f)]
    assert sorted(r.values["id"] for r in archived if r.table == ("procrastinate_jobs",)) == old

    restored = restore.restore(conn, _files(root), dry_run=True)
    assert restored.inserted == {"procrastinate_jobs": 7, "procrastinate_events": 21}
    assert {r[0] for r in conn.execute("SELECT id FROM procrastinate_jobs")} == {young}

    restore.restore(conn, _files(root))
    assert _dump(conn, JOBS_TABLES) == before

    again = restore.restore(conn, _files(root))
    assert again.inserted == {}
    assert again.refused == {"procrastinate_jobs": 7, "procrastinate_events": 21}


def test_verify_names_a_file_that_differs_from_the_ledger(conn, database, location, tmp_path):
    root = tmp_path / "archive"
    for _ in range(2):
        seed_job(conn, status="succeeded", finished_ago=OLD)
    _run(database, location, root)
    [first] = _files(root)
    first.write_bytes(gzip.compress(b'{"table": ["procrastinate_jobs"], "row": {"id": 1}}\n'))
    checks, _ = store.verify(conn, root)
    assert [c.ok for c in checks] == [False]
    assert "bytes" in (checks[0].problem or "") or "sha256" in (checks[0].problem or "")


@pytest.fixture
def records(conn, tmp_path):
    make_schema(conn)
    media = tmp_path / "media"
    old = [add_event(conn, media, age=OLD) for _ in range(5)]
    young = add_event(conn, media, age=dt.timedelta(days=1))
    return media, old, young


def test_table_rows_round_trip_with_their_children(conn, database, location, tmp_path, records):
    media, _, young = records
    root = tmp_path / "archive"
    before = _dump(conn, APP_TABLES)
    policy = records_policy(media, archive=True)

    plan = _run(database, location, root, dry_run=True, stages=("tables",), tables=[policy])
    assert plan["tables"]["app.events"]["archive"]["rows"] == 5 * 4
    assert _files(root) == []

    done = _run(database, location, root, stages=("tables",), tables=[policy])
    section = done["tables"]["app.events"]
    assert section["deleted"] == 5
    assert section["archive"]["rows"] == 20
    assert {r[0] for r in conn.execute("SELECT id FROM app.events")} == {young}
    checks, unrecorded = store.verify(conn, root)
    assert all(c.ok for c in checks)
    assert unrecorded == []

    restore.restore(conn, _files(root))
    assert _dump(conn, APP_TABLES) == before


@pytest.mark.parametrize("jobs_path", ["auto", "normal"], ids=["set-based", "normal"])
def test_a_purge_archives_what_it_deletes_when_jobs_archive(
    conn, database, location, tmp_path, jobs_path
):
    """`retention purge` goes through the same archive as the prune: its jobs and their events
    are in the archive before its batches commit, and restore brings them back equal. On both
    jobs paths."""
    from retention.jobs import purge

    root = tmp_path / "archive"
    chosen = [seed_job(conn, status="failed", finished_ago=dt.timedelta(days=2)) for _ in range(4)]
    other = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=2))
    before = _dump(conn, JOBS_TABLES)
    settings = make_settings(
        database,
        jobs={"archive": True},
        archive={"root": str(root)},
        batch_size=3,
        jobs_path=jobs_path,
    )
    filters = purge.PurgeFilters.parse(
        job_ids=chosen, queue=None, task=None, statuses=None, finished_before=None
    )
    preview = runner.purge(settings, location, filters, dry_run=True, trigger="cli").to_json()
    assert preview["jobs"]["deleted"] == 4
    assert _files(root) == []

    done = runner.purge(settings, location, filters, dry_run=False, trigger="cli").to_json()
    assert done["jobs"]["path"] == ("set-based" if jobs_path == "auto" else "normal")
    assert done["jobs"]["deleted"] == 4
    assert done["jobs"]["events"] == 4 * 3
    assert done["jobs"]["archive"]["files"] == 2
    assert {r[0] for r in conn.execute("SELECT id FROM procrastinate_jobs")} == {other}
    checks, unrecorded = store.verify(conn, root)
    assert [c.problem for c in checks] == [None, None]
    assert unrecorded == []

    restore.restore(conn, _files(root))
    assert _dump(conn, JOBS_TABLES) == before
