"""The batched-delete engine on its own: a segment over a real table, a deleter written here (it
deletes with SQL and records what it was given), and the engine's loop: batches, the named row
contract, dry runs in read-only transactions, stops and resumes, lock backoffs."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

from retention.engine import batches, results

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

SELECT = sql.SQL(
    "SELECT i.at AS at, i.id AS item, CASE WHEN i.old THEN i.id END AS id, i.kind AS kind"
    "  FROM items i"
    " WHERE (i.at, i.id) > (%(after_at)s, %(after_id)s)"
    " ORDER BY i.at, i.id LIMIT %(limit)s"
)


class RecordingDeleter:
    def __init__(self) -> None:
        self.deleted: list[list[int]] = []
        self.previewed: list[list[int]] = []

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        self.deleted.append(list(ids))
        cur.execute("DELETE FROM items WHERE id = ANY(%s)", (ids,))
        return {"deleted": cur.rowcount, "extra": 2 * cur.rowcount}

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        self.previewed.append(list(ids))
        # A preview runs in a read-only transaction: this write must fail.
        cur.execute("SAVEPOINT probe")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            cur.execute("DELETE FROM items WHERE id = ANY(%s)", (ids,))
        cur.execute("ROLLBACK TO SAVEPOINT probe")
        return {"extra": 2 * len(ids)}


@pytest.fixture
def items(conn: psycopg.Connection) -> psycopg.Connection:
    """300 rows, one a minute; ids divisible by 3 are kept, the others are old."""
    conn.execute(
        "CREATE TABLE items (id bigint PRIMARY KEY, at timestamptz NOT NULL, old boolean NOT NULL,"
        " kind text NOT NULL)"
    )
    conn.execute(
        "INSERT INTO items SELECT g, %s + g * interval '1 minute', g %% 3 <> 0,"
        " CASE WHEN g %% 2 = 0 THEN 'even' ELSE 'odd' END FROM generate_series(1, 300) g",
        (START,),
    )
    return conn


def _segment(**overrides: Any) -> batches.Segment:
    fields: dict[str, Any] = {
        "name": "items",
        "select": SELECT,
        "params": lambda after, limit: {
            "after_at": after[0],
            "after_id": after[1],
            "limit": limit,
        },
        "start": (START - dt.timedelta(days=1), 0),
        "key": ("at", "item"),
        "groups": ("kind",),
    }
    fields.update(overrides)
    return batches.Segment(**fields)


def _limits(**overrides: Any) -> batches.Limits:
    fields: dict[str, Any] = {
        "batch_size": 40,
        "max_batch_seconds": 1.0,
        "lock_timeout": dt.timedelta(milliseconds=20),
        "deadline": time.monotonic() + 60,
    }
    fields.update(overrides)
    return batches.Limits(**fields)


def _left(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM items").fetchone()
    assert row is not None
    return int(row[0])


def test_a_walk_deletes_every_eligible_row_in_bounded_batches(items):
    deleter = RecordingDeleter()
    target = batches.Target(name="items", segments=[_segment()], deleter=deleter)
    seen: list[float] = []
    result = batches.run(
        items, target, _limits(), dry_run=False, on_progress=lambda r: seen.append(r.fraction)
    )
    assert result.deleted == 200
    assert _left(items) == 100
    assert result.counts["extra"] == 400
    assert result.scanned == 300
    assert result.by["kind"] == {"even": 100, "odd": 100}
    assert result.oldest == START + dt.timedelta(minutes=1)
    assert result.samples == [1, 2, 4, 5, 7]
    assert result.stopped is None
    assert result.fraction == 1.0
    assert all(len(batch) <= 40 for batch in deleter.deleted)
    assert sorted(i for batch in deleter.deleted for i in batch) == [
        i for i in range(1, 301) if i % 3
    ]
    assert seen
    assert seen[-1] == 1.0
    again = batches.run(items, target, _limits(), dry_run=False)
    assert again.deleted == 0
    assert _left(items) == 100


def test_a_dry_run_previews_the_same_batches_read_only(items):
    deleter = RecordingDeleter()
    target = batches.Target(name="items", segments=[_segment()], deleter=deleter)
    result = batches.run(items, target, _limits(), dry_run=True)
    assert result.deleted == 200
    assert result.counts["extra"] == 400
    assert deleter.deleted == []
    assert sorted(i for batch in deleter.previewed for i in batch) == [
        i for i in range(1, 301) if i % 3
    ]
    assert _left(items) == 300


def test_a_spent_time_budget_stops_before_the_first_batch(items):
    deleter = RecordingDeleter()
    target = batches.Target(name="items", segments=[_segment()], deleter=deleter)
    result = batches.run(items, target, _limits(deadline=time.monotonic() - 1), dry_run=False)
    assert result.stopped is results.StopReason.TIME_BUDGET
    assert result.resume == results.Resume(segment="items", after=_segment().start)
    assert deleter.deleted == []
    assert _left(items) == 300


def test_an_abort_stops_between_batches_and_the_next_run_finishes(items):
    deleter = RecordingDeleter()
    target = batches.Target(name="items", segments=[_segment()], deleter=deleter)
    limits = _limits(batch_size=20, should_abort=lambda: len(deleter.deleted) >= 2)
    first = batches.run(items, target, limits, dry_run=False)
    assert first.stopped is results.StopReason.ABORTED
    assert len(deleter.deleted) == 2
    assert first.resume is not None
    assert first.resume.segment == "items"
    last_deleted = max(deleter.deleted[-1])
    assert first.resume.after[1] >= last_deleted
    assert _left(items) == 300 - first.deleted
    second = batches.run(items, target, _limits(), dry_run=False)
    assert second.stopped is None
    assert first.deleted + second.deleted == 200
    assert _left(items) == 100


def test_rows_are_read_by_name_whatever_their_column_order(items):
    reordered = sql.SQL(
        "SELECT i.kind AS kind, CASE WHEN i.old THEN i.id END AS id, i.id AS item, i.at AS at"
        "  FROM items i WHERE (i.at, i.id) > (%(after_at)s, %(after_id)s)"
        " ORDER BY i.at, i.id LIMIT %(limit)s"
    )
    target = batches.Target(
        name="items", segments=[_segment(select=reordered)], deleter=RecordingDeleter()
    )
    result = batches.run(items, target, _limits(), dry_run=False)
    assert result.deleted == 200
    assert result.by["kind"] == {"even": 100, "odd": 100}


def test_a_row_locked_elsewhere_backs_off_until_the_walk_stops(items, database):
    deleter = RecordingDeleter()
    target = batches.Target(name="items", segments=[_segment()], deleter=deleter)
    with psycopg.connect(database) as holder:
        holder.execute("SELECT 1 FROM items WHERE id = 1 FOR UPDATE")
        result = batches.run(items, target, _limits(), dry_run=False)
        holder.rollback()
    assert result.stopped is results.StopReason.LOCK_CONTENTION
    assert result.lock_backoffs == batches.MAX_BACKOFFS + 1
    assert result.deleted == 0
    assert _left(items) == 300


def test_a_locking_select_skips_rows_locked_elsewhere(items, database):
    locking = sql.SQL(
        "SELECT i.at AS at, i.id AS item, CASE WHEN i.old THEN i.id END AS id, i.kind AS kind"
        "  FROM items i WHERE (i.at, i.id) > (%(after_at)s, %(after_id)s)"
        " ORDER BY i.at, i.id LIMIT %(limit)s FOR UPDATE OF i SKIP LOCKED"
    )
    deleter = RecordingDeleter()
    target = batches.Target(
        name="items", segments=[_segment(locking_select=locking)], deleter=deleter
    )
    with psycopg.connect(database) as holder:
        holder.execute("SELECT 1 FROM items WHERE id = 1 FOR UPDATE")
        result = batches.run(items, target, _limits(), dry_run=False)
        holder.rollback()
    assert result.deleted == 199
    assert result.stopped is None
    row = items.execute("SELECT count(*) FROM items WHERE id = 1").fetchone()
    assert row is not None
    assert row[0] == 1


class JitRecordingDeleter(RecordingDeleter):
    """Records the `jit` setting each batch's transaction runs with."""

    def __init__(self) -> None:
        super().__init__()
        self.jit: list[str] = []

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        self.jit.append(str(cur.execute("SHOW jit").fetchone()[0]))  # type: ignore[index]
        return super().delete(cur, ids)

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        self.jit.append(str(cur.execute("SHOW jit").fetchone()[0]))  # type: ignore[index]
        return super().preview(cur, ids)


@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry"])
def test_every_batch_runs_with_jit_off_and_the_session_keeps_its_own(items, dry_run):
    """JIT could compile each batch's statement on a big table: off for each batch's
    transaction only (SET LOCAL), the session's own setting untouched."""
    items.execute("SET jit = on")
    deleter = JitRecordingDeleter()
    target = batches.Target(name="items", segments=[_segment()], deleter=deleter)
    batches.run(items, target, _limits(), dry_run=dry_run)
    assert deleter.jit
    assert set(deleter.jit) == {"off"}
    assert items.execute("SHOW jit").fetchone() == ("on",)
