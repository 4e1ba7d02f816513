"""Record retention: table policies through the engine, children first, files through the outbox,
policies checked against the catalog. Real PostgreSQL, real files, the real CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import make_settings, run_cli, seed_job

from retention import errors
from retention.run import runner
from retention.tables import planning

SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.events (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    kind text NOT NULL DEFAULT 'info',
    image text
);
CREATE INDEX ON app.events (created_at, id);
CREATE TABLE app.detections (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES app.events (id),
    crop text
);
CREATE INDEX ON app.detections (event_id);
CREATE TABLE app.notes (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES app.events (id) ON DELETE CASCADE,
    attachment text
);
CREATE INDEX ON app.notes (event_id);
"""


def make_schema(conn: psycopg.Connection) -> None:
    conn.execute(SCHEMA)


def add_event(
    conn: psycopg.Connection,
    root: Path,
    *,
    age: dt.timedelta,
    kind: str = "info",
    detections: int = 2,
    notes: int = 1,
    image: str | None = "make",
) -> int:
    row = conn.execute(
        "INSERT INTO app.events (created_at, kind) VALUES (now() - %s, %s) RETURNING id",
        (age, kind),
    ).fetchone()
    assert row is not None
    event = row[0]
    if image == "make":
        image = f"events/{event}.jpg"
        _touch(root / image, 100)
    conn.execute("UPDATE app.events SET image = %s WHERE id = %s", (image, event))
    for n in range(detections):
        crop = f"crops/{event}-{n}.png"
        _touch(root / crop, 10)
        conn.execute("INSERT INTO app.detections (event_id, crop) VALUES (%s, %s)", (event, crop))
    for n in range(notes):
        attachment = f"notes/{event}-{n}.txt"
        _touch(root / attachment, 1)
        conn.execute(
            "INSERT INTO app.notes (event_id, attachment) VALUES (%s, %s)", (event, attachment)
        )
    return event


def _touch(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def policy(root: Path, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "table": "app.events",
        "timestamp": "created_at",
        "age": "30d",
        "files": [{"column": "image", "root": str(root)}],
        "children": [
            {
                "table": "app.detections",
                "column": "event_id",
                "files": [{"column": "crop", "root": str(root)}],
            },
            {
                "table": "app.notes",
                "column": "event_id",
                "files": [{"column": "attachment", "root": str(root)}],
            },
        ],
    }
    base.update(overrides)
    return base


def ids(conn: psycopg.Connection, table: str) -> set[int]:
    return {r[0] for r in conn.execute(f"SELECT id FROM {table}")}


def files_on_disk(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def execute(database, location, tables, *, dry_run=False, stages=("tables", "files"), **kw):
    settings = make_settings(database, tables=tables, **kw)
    return runner.execute(settings, location, stages=list(stages), dry_run=dry_run, trigger="cli")


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
    assert files_on_disk(root) == before and ids(conn, "app.events") == rows_before
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


def test_cli_json_has_tables_and_files(conn, database, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    add_event(conn, root, age=dt.timedelta(days=40))
    config = tmp_path / "retention.toml"
    config.write_text(_toml(policy(root)))
    done = run_cli("--config", str(config), "run", "--json", database=database)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    table = summary["tables"]["app.events"]
    assert (table["deleted"], table["child_rows"], table["files_queued"]) == (1, 3, 4)
    assert table["partitions_dropped"] == 0
    assert {k: summary["files"][k] for k in ("deleted", "failed", "pending", "refused")} == {
        "deleted": 4,
        "failed": 0,
        "pending": 0,
        "refused": 0,
    }
    assert summary["files"]["bytes"] == 100 + 20 + 1
    stored = conn.execute(
        "SELECT summary FROM retention_runs WHERE id = %s", (summary["run_id"],)
    ).fetchone()[0]
    assert stored["tables"]["app.events"]["deleted"] == 1
    assert stored["files"]["deleted"] == 4


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _toml(*policies: dict[str, Any]) -> str:
    lines = []
    for item in policies:
        lines.append("[[tables]]")
        for key, value in item.items():
            if key in ("files", "children"):
                continue
            lines.append(f"{key} = {_value(value)}")
        for file_column in item.get("files", []):
            lines.append("[[tables.files]]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in file_column.items())
        for child in item.get("children", []):
            lines.append("[[tables.children]]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in child.items() if k != "files")
            for file_column in child.get("files", []):
                lines.append("[[tables.children.files]]")
                lines.extend(f"{k} = {json.dumps(v)}" for k, v in file_column.items())
    return "\n".join(lines) + "\n"


BAD_POLICIES = [
    ({"table": "app.nope"}, "does not exist"),
    ({"table": "a.b.c.d"}, "does not exist"),
    ({"table": "bad name; drop table app.events"}, "does not exist"),
    ({"timestamp": "created"}, "has no column 'created'"),
    ({"timestamp": "kind"}, "must be timestamptz, timestamp or date"),
    ({"where": {"colour": "red"}}, "has no column 'colour'"),
    ({"files": [{"column": "id", "root": "/srv/media"}]}, "must hold text paths"),
    ({"key": "kind"}, "not unique"),
    (
        {"children": [{"table": "app.notes", "column": "id"}]},
        "does not reference app.events",
    ),
    ({"children": []}, "app.detections(event_id) references app.events with ON DELETE NO ACTION"),
]


@pytest.mark.parametrize(("change", "message"), BAD_POLICIES)
def test_bad_policies_are_refused_before_anything_runs(conn, database, tmp_path, change, message):
    make_schema(conn)
    root = tmp_path / "media"
    event = add_event(conn, root, age=dt.timedelta(days=40))
    job = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=90))
    config = tmp_path / "retention.toml"
    config.write_text(_toml(policy(root, **change)))

    done = run_cli("--config", str(config), "run", database=database)

    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "tables[0]" in done.stderr
    assert event in ids(conn, "app.events")
    assert job in {r[0] for r in conn.execute("SELECT id FROM procrastinate_jobs")}
    assert conn.execute("SELECT count(*) FROM retention_runs").fetchone()[0] == 0


def test_multi_column_primary_key_needs_a_key(conn, database, location):
    conn.execute(
        "CREATE TABLE readings (sensor int, at timestamptz, value real, PRIMARY KEY (sensor, at))"
    )
    settings = make_settings(database, tables=[{"table": "readings", "timestamp": "at"}])
    with pytest.raises(errors.ConfigError, match="multi-column primary key"):
        planning.check(conn, settings)


def test_missing_timestamp_index_is_a_warning_with_the_statement(conn, database, tmp_path):
    conn.execute("CREATE TABLE logs (id bigserial PRIMARY KEY, at timestamp NOT NULL, line text)")
    conn.execute(
        "INSERT INTO logs (at, line) SELECT now() - g * interval '1 day' + interval '1 hour', 'x' "
        "FROM generate_series(1, 20) g"
    )
    config = tmp_path / "retention.toml"
    config.write_text('[[tables]]\ntable = "logs"\ntimestamp = "at"\nage = "10d"\n')
    done = run_cli("--config", str(config), "run", "--json", database=database)
    assert done.returncode == 0, done.stderr
    assert 'CREATE INDEX CONCURRENTLY ON "public"."logs" ("at", "id");' in done.stderr
    summary = json.loads(done.stdout)
    assert summary["tables"]["logs"]["deleted"] == 10
    assert "CREATE INDEX CONCURRENTLY" in summary["tables"]["logs"]["warnings"][0]
    assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 10


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


def test_locked_rows_are_skipped_and_taken_next_run(conn, database, location, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    first = add_event(conn, root, age=dt.timedelta(days=40), detections=0, notes=0)
    second = add_event(conn, root, age=dt.timedelta(days=40), detections=0, notes=0)
    with psycopg.connect(database) as other:
        other.execute("SELECT 1 FROM app.events WHERE id = %s FOR UPDATE", (first,))
        summary = execute(database, location, [policy(root)])
        assert summary["tables"]["app.events"]["deleted"] == 1
        assert ids(conn, "app.events") == {first}
    again = execute(database, location, [policy(root)])
    assert again["tables"]["app.events"]["deleted"] == 1
    assert ids(conn, "app.events") == set()
    assert second not in ids(conn, "app.events")
