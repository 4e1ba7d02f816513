"""Range-partitioned tables: partitions entirely before the cutoff are detached and dropped (their
children deleted and files queued first), the straddling partition is pruned row by row."""

from __future__ import annotations

import datetime as dt

from retention.run import runner
from tests.helpers import PARTITION_DAYS as DAYS
from tests.helpers import make_partitioned, make_settings
from tests.helpers import partitioned_policy as policy
from tests.helpers import partitions_of as _partitions


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

    plan = runner.execute(
        settings, location, stages=["tables"], dry_run=True, trigger="cli"
    ).to_json()["tables"]["events"]
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
    ).to_json()
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
    summary = runner.execute(
        settings, location, stages=["tables"], dry_run=False, trigger="cli"
    ).to_json()
    section = summary["tables"]["metrics"]
    assert section["partitions_dropped"] == 1
    assert section["partitions"][0]["rows_exact"] is False
    assert section["partitions"][0]["rows"] == 1000
    assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0
