"""Range-partitioned tables: partitions entirely before the cutoff are detached and dropped (their
children deleted and files queued first), the straddling partition is pruned row by row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
from conftest import make_settings

from retention.run import runner

DAYS = 10


def make_partitioned(conn: psycopg.Connection, root: Path, *, per_day: int = 6) -> None:
    conn.execute(
        """
        CREATE TABLE events (
            id bigint GENERATED ALWAYS AS IDENTITY,
            created_at timestamptz NOT NULL,
            image text,
            PRIMARY KEY (id, created_at)
        ) PARTITION BY RANGE (created_at);
        CREATE TABLE events_default PARTITION OF events DEFAULT;
        CREATE TABLE detections (
            id bigserial PRIMARY KEY,
            event_id bigint NOT NULL,
            event_at timestamptz NOT NULL,
            crop text,
            FOREIGN KEY (event_id, event_at) REFERENCES events ON DELETE CASCADE
        );
        CREATE INDEX ON detections (event_id, event_at);
        """
    )
    today = conn.execute("SELECT date_trunc('day', now())").fetchone()[0]
    for day in range(DAYS, -2, -1):
        low = today - dt.timedelta(days=day)
        conn.execute(
            f'CREATE TABLE "events_{day}" PARTITION OF events '
            f"FOR VALUES FROM ('{low.isoformat()}') TO "
            f"('{(low + dt.timedelta(days=1)).isoformat()}')"
        )
    for day in range(DAYS, -1, -1):
        for n in range(per_day):
            at = today - dt.timedelta(days=day) + dt.timedelta(hours=4 * n, minutes=1)
            row = conn.execute(
                "INSERT INTO events (created_at) VALUES (%s) RETURNING id", (at,)
            ).fetchone()
            assert row is not None
            image = f"img/{row[0]}.jpg"
            _touch(root / image)
            conn.execute("UPDATE events SET image = %s WHERE id = %s", (image, row[0]))
            crop = f"crop/{row[0]}.png"
            _touch(root / crop)
            conn.execute(
                "INSERT INTO detections (event_id, event_at, crop) VALUES (%s, %s, %s)",
                (row[0], at, crop),
            )
    # rows far in the past in the default partition: pruned row by row, never dropped
    conn.execute("INSERT INTO events (created_at, image) VALUES (now() - interval '400 days', '')")


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"12345")


def policy(root: Path) -> dict:
    return {
        "table": "events",
        "timestamp": "created_at",
        "key": "id",
        "age": "132h",
        "files": [{"column": "image", "root": str(root)}],
        "children": [
            {
                "table": "detections",
                "column": "event_id",
                "files": [{"column": "crop", "root": str(root)}],
            }
        ],
    }


def _partitions(conn: psycopg.Connection) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        )
    }


def test_old_partitions_are_dropped_and_the_straddling_one_pruned(
    conn, database, location, tmp_path
):
    root = tmp_path / "media"
    make_partitioned(conn, root)
    cutoff = conn.execute("SELECT now() - interval '5 days 12 hours'").fetchone()[0]
    old_ids = {r[0] for r in conn.execute("SELECT id FROM events WHERE created_at < %s", (cutoff,))}
    young_ids = {
        r[0] for r in conn.execute("SELECT id FROM events WHERE created_at >= %s", (cutoff,))
    }
    settings = make_settings(database, tables=[policy(root)], batch_size=4)
    before = _partitions(conn)

    plan = runner.execute(settings, location, stages=["tables"], dry_run=True, trigger="cli")[
        "tables"
    ]["events"]
    assert _partitions(conn) == before
    today = conn.execute("SELECT date_trunc('day', now())").fetchone()[0]
    expected = {
        f"events_{day}"
        for day in range(DAYS, -2, -1)
        if today - dt.timedelta(days=day - 1) <= cutoff
    }
    assert len(expected) in (4, 5)
    assert {p["name"] for p in plan["partitions"]} == {f"public.{n}" for n in expected}
    assert plan["partitions_dropped"] == len(expected)

    summary = runner.execute(
        settings, location, stages=["tables", "files"], dry_run=False, trigger="cli"
    )
    real = summary["tables"]["events"]

    for key in ("deleted", "child_rows", "files_queued", "partitions_dropped", "partition_rows"):
        assert plan[key] == real[key], key
    assert _partitions(conn) == before - expected
    assert real["partition_rows"] == 6 * len(expected)
    assert real["deleted"] == len(old_ids) - real["partition_rows"] >= 1
    assert {r[0] for r in conn.execute("SELECT id FROM events")} == young_ids
    assert {r[0] for r in conn.execute("SELECT event_id FROM detections")} == young_ids
    assert real["child_rows"] == len(old_ids) - 1
    assert summary["files"]["deleted"] == 2 * (len(old_ids) - 1)
    left = {p.name for p in root.rglob("*") if p.is_file()}
    assert left == {f"{i}.jpg" for i in young_ids} | {f"{i}.png" for i in young_ids}
    assert conn.execute("SELECT count(*) FROM retention_file_outbox").fetchone()[0] == 0


def test_partition_drop_waits_for_no_lock_forever(conn, database, location, tmp_path):
    root = tmp_path / "media"
    make_partitioned(conn, root, per_day=1)
    settings = make_settings(database, tables=[policy(root)], lock_timeout="50ms")
    with psycopg.connect(database) as reader:
        reader.execute("SELECT count(*) FROM events_9")
        summary = runner.execute(
            settings, location, stages=["tables"], dry_run=False, trigger="cli"
        )
    section = summary["tables"]["events"]
    assert any("events_9" in e and "LockNotAvailable" in e for e in section["partition_errors"])
    assert "events_9" in _partitions(conn)
    assert "events_8" not in _partitions(conn)
    # its rows went row by row instead, through the engine
    assert conn.execute("SELECT count(*) FROM events_9").fetchone()[0] == 0


def test_partitions_without_files_or_children_are_not_scanned(conn, database, location):
    conn.execute(
        "CREATE TABLE metrics (at date NOT NULL, value real) PARTITION BY RANGE (at);"
        "CREATE TABLE metrics_old PARTITION OF metrics FOR VALUES FROM ('2000-01-01') TO "
        "('2000-02-01');"
        "CREATE TABLE metrics_new PARTITION OF metrics FOR VALUES FROM ('2000-02-01') TO "
        "(MAXVALUE);"
        "ALTER TABLE metrics ADD COLUMN id bigserial;"
        "CREATE UNIQUE INDEX ON metrics (id, at);"
        "INSERT INTO metrics (at, value) SELECT '2000-01-01'::date + g % 31, g "
        "FROM generate_series(1, 1000) g;"
        "ANALYZE metrics;"
    )
    settings = make_settings(
        database, tables=[{"table": "metrics", "timestamp": "at", "key": "id", "age": "1d"}]
    )
    summary = runner.execute(settings, location, stages=["tables"], dry_run=False, trigger="cli")
    section = summary["tables"]["metrics"]
    assert section["partitions_dropped"] == 1
    assert section["partitions"][0]["rows_exact"] is False
    assert section["partitions"][0]["rows"] == 1000
    assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0
