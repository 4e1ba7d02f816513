"""Record retention in-process: table policies through the engine, children first, files through
the outbox, policies checked against the catalog. Real PostgreSQL, real files."""

from __future__ import annotations

import datetime as dt

import pytest

from retention import errors
from retention.tables import planning
from tests.helpers import add_event, files_on_disk, ids, make_schema, make_settings
from tests.helpers import execute_tables as execute
from tests.helpers import records_policy as policy


def test_old_rows_go_with_children_and_files(conn, database, location, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    old = [add_event(conn, root, age=dt.timedelta(days=40 + i)) for i in range(5)]
    new = [add_event(conn, root, age=dt.timedelta(days=2)) for _ in range(3)]
    before = files_on_disk(root)

    summary = execute(database, location, [policy(root)], batch_size=2)

    section = summary["tables"]["app.events"]
    assert section["deleted"] == 5
    assert section["child_rows"] == 5 * 2 + 5 * 1
    assert section["files_queued"] == 5 * (1 + 2 + 1)
    assert section["partitions_dropped"] == 0
    assert ids(conn, "app.events") == set(new)
    assert {r[0] for r in conn.execute("SELECT event_id FROM app.detections")} == set(new)
    assert {r[0] for r in conn.execute("SELECT event_id FROM app.notes")} == set(new)
    gone = {p for p in before if any(f"/{e}." in f"/{p}" or f"/{e}-" in f"/{p}" for e in old)}
    assert len(gone) == 20
    assert files_on_disk(root) == before - gone
    assert summary["files"]["deleted"] == 20
    assert summary["files"]["bytes"] == 5 * (100 + 2 * 10 + 1)
    assert summary["files"]["pending"] == 0
    assert conn.execute("SELECT count(*) FROM retention_file_outbox").fetchone()[0] == 0


def test_dry_run_equals_real_run_and_changes_nothing(conn, database, location, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    for i in range(7):
        add_event(conn, root, age=dt.timedelta(days=31 + i), detections=i % 3, notes=i % 2)
    add_event(conn, root, age=dt.timedelta(days=31), image=None)
    add_event(conn, root, age=dt.timedelta(days=31), image="")
    for _ in range(4):
        add_event(conn, root, age=dt.timedelta(days=1))
    before = files_on_disk(root)
    rows_before = ids(conn, "app.events")

    plan = execute(database, location, [policy(root)], dry_run=True, batch_size=3)
    assert files_on_disk(root) == before
    assert ids(conn, "app.events") == rows_before
    assert conn.execute("SELECT count(*) FROM retention_file_outbox").fetchone()[0] == 0

    real = execute(database, location, [policy(root)], batch_size=3)
    keys = ("deleted", "child_rows", "files_queued", "partitions_dropped")
    assert {k: plan["tables"]["app.events"][k] for k in keys} == {
        k: real["tables"]["app.events"][k] for k in keys
    }
    assert real["tables"]["app.events"]["deleted"] == 9
    assert real["tables"]["app.events"]["files_queued"] == real["files"]["deleted"]


def test_filters_and_kept_files(conn, database, location, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    debug = add_event(conn, root, age=dt.timedelta(days=50), kind="debug", detections=0, notes=0)
    trace = add_event(conn, root, age=dt.timedelta(days=50), kind="trace", detections=0, notes=0)
    info = add_event(conn, root, age=dt.timedelta(days=50), kind="info", detections=0, notes=0)
    tables = [
        policy(
            root,
            where={"kind": ["debug", "trace"]},
            files=[{"column": "image", "root": str(root), "delete": False}],
        )
    ]
    summary = execute(database, location, tables)
    assert ids(conn, "app.events") == {info}
    assert summary["tables"]["app.events"]["files_queued"] == 0
    assert {f"events/{debug}.jpg", f"events/{trace}.jpg"} <= files_on_disk(root)


def test_log_retention_days_age(conn, database, location, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    old = add_event(conn, root, age=dt.timedelta(days=4), detections=0, notes=0)
    young = add_event(conn, root, age=dt.timedelta(days=2), detections=0, notes=0)
    tables = [policy(root, age="log_retention_days", children=[])]
    tables[0]["children"] = []
    conn.execute("ALTER TABLE app.detections DROP CONSTRAINT detections_event_id_fkey")
    execute(database, location, tables, log_retention_days=3)
    assert ids(conn, "app.events") == {young}
    assert old not in ids(conn, "app.events")


def test_escaping_paths_in_rows_are_refused(conn, database, location, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    secret = tmp_path / "secret.txt"
    secret.write_text("keep me")
    add_event(conn, root, age=dt.timedelta(days=40), image="../secret.txt", detections=0)
    add_event(conn, root, age=dt.timedelta(days=40), image=str(secret), detections=0)
    summary = execute(database, location, [policy(root)])
    assert summary["tables"]["app.events"]["deleted"] == 2
    assert summary["files"]["refused"] == 2
    assert secret.read_text() == "keep me"
    refused = conn.execute(
        "SELECT count(*) FROM retention_file_outbox WHERE refused AND source = %s",
        ("table:app.events.image",),
    ).fetchone()[0]
    assert refused == 2


def test_multi_column_primary_key_needs_a_key(conn, database, location):
    conn.execute(
        "CREATE TABLE readings (sensor int, at timestamptz, value real, PRIMARY KEY (sensor, at))"
    )
    settings = make_settings(database, tables=[{"table": "readings", "timestamp": "at"}])
    with pytest.raises(errors.ConfigError, match="multi-column primary key"):
        planning.check(conn, settings)


def test_date_column_and_text_key(conn, database, location):
    conn.execute("CREATE TABLE daily (code text PRIMARY KEY, day date NOT NULL)")
    conn.execute("CREATE INDEX ON daily (day)")
    conn.execute(
        "INSERT INTO daily SELECT 'c' || g, current_date - g FROM generate_series(0, 49) g"
    )
    tables = [{"table": "daily", "timestamp": "day", "age": "20d"}]
    plan = execute(database, location, tables, dry_run=True, stages=("tables",), batch_size=7)
    real = execute(database, location, tables, stages=("tables",), batch_size=7)
    assert plan["tables"]["daily"]["deleted"] == real["tables"]["daily"]["deleted"] == 29
    assert conn.execute("SELECT max(current_date - day) FROM daily").fetchone()[0] == 20


def test_enum_filter_and_uuid_key(conn, database, location):
    conn.execute("CREATE TYPE level AS ENUM ('debug', 'info', 'error')")
    conn.execute(
        "CREATE TABLE audit (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
        "at timestamptz NOT NULL, level level NOT NULL)"
    )
    conn.execute("CREATE INDEX ON audit (at)")
    conn.execute(
        "INSERT INTO audit (at, level) SELECT now() - interval '40 days', "
        "(ARRAY['debug','info','error'])[1 + g % 3]::level FROM generate_series(1, 30) g"
    )
    tables = [{"table": "audit", "timestamp": "at", "where": {"level": ["debug", "info"]}}]
    summary = execute(database, location, tables, stages=("tables",), batch_size=4)
    assert summary["tables"]["audit"]["deleted"] == 20
    left = conn.execute("SELECT DISTINCT level::text FROM audit").fetchall()
    assert left == [("error",)]
