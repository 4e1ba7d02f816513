"""Table policies through the real CLI: the JSON report, policies refused against the catalog
before anything runs, the missing-index warning."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.helpers import add_event, ids, make_schema, run_cli, seed_job
from tests.helpers import records_policy as policy
from tests.helpers import tables_toml as _toml


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
    recorded = conn.execute("SELECT status, error FROM retention_runs").fetchall()
    assert len(recorded) == 1
    assert recorded[0][0] == "failed"
    assert message in recorded[0][1]


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
