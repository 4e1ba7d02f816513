"""Table retention's safety through the real CLI: files of rows an application keeps are kept,
Procrastinate's tables and ours are refused, a filter value the column cannot hold is refused
before anything is deleted, and rows dated infinity or -infinity neither crash a run, `status`
nor `metrics`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from tests.helpers import DAY, files_on_disk, job_ids, run_cli, seed_job, tables_toml, write_toml
from tests.helpers import metric_value as value
from tests.helpers import parse_metrics as parse

JOBS = '[jobs]\nsucceeded = "1d"\n'


def run(config: Path, database: str, *args: str):
    return run_cli("--config", str(config), *args, database=database)


def test_a_row_a_trigger_keeps_keeps_its_cascading_children_and_their_files(
    conn, database, tmp_path
):
    root = tmp_path / "media"
    conn.execute(
        """
        CREATE TABLE posts (id int PRIMARY KEY, at timestamptz NOT NULL, legal_hold boolean);
        CREATE INDEX ON posts (at, id);
        CREATE TABLE photos (
            id serial PRIMARY KEY, post_id int REFERENCES posts ON DELETE CASCADE, path text
        );
        CREATE INDEX ON photos (post_id);
        CREATE FUNCTION keep_on_hold() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.legal_hold THEN
                RETURN NULL;
            END IF;
            RETURN OLD;
        END
        $$;
        CREATE TRIGGER keep_on_hold BEFORE DELETE ON posts
            FOR EACH ROW EXECUTE FUNCTION keep_on_hold();
        INSERT INTO posts VALUES (1, now() - interval '90 days', true),
                                 (2, now() - interval '90 days', false);
        INSERT INTO photos (post_id, path) VALUES (1, 'a.jpg'), (1, 'b.jpg'), (2, 'c.jpg');
        """
    )
    root.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (root / name).write_bytes(b"x")
    config = write_toml(
        tmp_path,
        tables_toml(
            {
                "table": "posts",
                "timestamp": "at",
                "children": [
                    {
                        "table": "photos",
                        "column": "post_id",
                        "files": [{"column": "path", "root": str(root)}],
                    }
                ],
            }
        ),
    )
    result = run(config, database, "run", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tables"]["posts"]["deleted"] == 1
    assert summary["files"]["deleted"] == 1
    assert files_on_disk(root) == {"a.jpg", "b.jpg"}
    assert {r[0] for r in conn.execute("SELECT post_id FROM photos")} == {1}


@pytest.mark.parametrize(
    ("policy", "shown", "hint"),
    [
        (
            {"table": "procrastinate_jobs", "timestamp": "scheduled_at", "age": "1s"},
            "public.procrastinate_jobs is a Procrastinate table",
            "job retention is configured in [jobs]; todo and doing jobs are never deleted",
        ),
        (
            {"table": "public.procrastinate_events", "timestamp": "at", "age": "1s"},
            "public.procrastinate_events is a Procrastinate table",
            "job retention is configured in [jobs]",
        ),
        (
            {"table": "retention_runs", "timestamp": "started_at", "age": "1s"},
            "public.retention_runs is one of retention's own tables",
            "our own tables are never a policy's table or child",
        ),
    ],
)
def test_a_policy_on_a_protected_table_is_refused_and_nothing_runs(
    conn, database, tmp_path, policy, shown, hint
):
    todo = seed_job(conn, status="todo", finished_ago=None)
    doing = seed_job(conn, status="doing", finished_ago=None)
    old = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=5))
    conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now() - interval '1 day'")
    config = write_toml(tmp_path, JOBS + tables_toml(policy))
    for command in (("run",), ("plan",), ("run", "--dry-run")):
        result = run(config, database, *command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert shown in result.stderr
        assert hint in result.stderr
        assert "tables[0]" in result.stderr
        assert "Traceback" not in result.stderr
    assert job_ids(conn) == {todo, doing, old}
    recorded = conn.execute("SELECT status, error FROM retention_runs ORDER BY id").fetchall()
    assert [status for status, _ in recorded] == ["failed", "failed", "failed"]
    assert all(shown in error for _, error in recorded)


BAD_VALUES = [
    ({"n": "abc"}, "tables[0].where.n: 'abc' is not a valid integer"),
    ({"n": 1.5}, "tables[0].where.n: '1.5' is not a valid integer"),
    ({"n": [1, 3000000000]}, "tables[0].where.n: '3000000000' is not a valid integer"),
    ({"day": "2024-13-01"}, "tables[0].where.day: '2024-13-01' is not a valid date"),
]


@pytest.mark.parametrize(("where", "message"), BAD_VALUES)
def test_a_filter_value_the_column_cannot_hold_stops_the_run_before_anything_is_deleted(
    conn, database, tmp_path, where, message
):
    conn.execute(
        "CREATE TABLE samples (id serial PRIMARY KEY, at timestamptz NOT NULL, n int, day date);"
        "CREATE INDEX ON samples (at);"
        "INSERT INTO samples (at, n, day) SELECT now() - interval '40 days', g, current_date "
        "FROM generate_series(1, 4) g"
    )
    old = {seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=5)) for _ in range(3)}
    config = write_toml(
        tmp_path,
        JOBS + tables_toml({"table": "samples", "timestamp": "at", "age": "30d", "where": where}),
    )
    for command in (("run",), ("plan",)):
        result = run(config, database, *command)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert message in result.stderr, result.stderr
        assert "(the type of public.samples." in result.stderr
        assert "Traceback" not in result.stderr
    assert job_ids(conn) == old
    assert conn.execute("SELECT count(*) FROM samples").fetchone()[0] == 4
    shown = run(config, database, "status", "--json")
    assert shown.returncode == 0, shown.stderr
    assert message in json.loads(shown.stdout)["backlog"]["tables"]["(invalid)"]["error"]


def test_good_filter_values_run(conn, database, tmp_path):
    conn.execute(
        "CREATE TABLE samples (id serial PRIMARY KEY, at timestamptz NOT NULL, n int, tag text);"
        "CREATE INDEX ON samples (at);"
        "INSERT INTO samples (at, n, tag) SELECT now() - interval '40 days', g, "
        "CASE WHEN g = 1 THEN 'true' ELSE 'x' END FROM generate_series(1, 4) g"
    )
    config = write_toml(
        tmp_path,
        tables_toml(
            {
                "table": "samples",
                "timestamp": "at",
                "age": "30d",
                "where": {"n": [1, 2], "tag": True},
            }
        ),
    )
    result = run(config, database, "run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tables"]["samples"]["deleted"] == 1
    assert {r[0] for r in conn.execute("SELECT n FROM samples")} == {2, 3, 4}


@pytest.mark.parametrize("column_type", ["timestamptz", "timestamp", "date"])
def test_rows_dated_infinity_or_minus_infinity(conn, database, tmp_path, column_type):
    conn.execute(
        f"CREATE TABLE readings (id int PRIMARY KEY, at {column_type} NOT NULL);"
        "CREATE INDEX ON readings (at, id);"
        "INSERT INTO readings VALUES (1, '-infinity'), (2, '-infinity'), (3, 'infinity'), "
        "(4, now() - interval '40 days'), (5, now())"
    )
    config = write_toml(
        tmp_path, tables_toml({"table": "readings", "timestamp": "at", "age": "30d"})
    )

    before = run(config, database, "status", "--json")
    assert before.returncode == 0, before.stderr
    backlog = json.loads(before.stdout)["backlog"]["tables"]["readings"]
    assert backlog["eligible"] == 3
    assert backlog["oldest"] == "0001-01-01T00:00:00+00:00"
    assert backlog["oldest_age_seconds"] > 2000 * 365 * DAY
    text = run(config, database, "status")
    assert text.returncode == 0, text.stderr
    assert "Traceback" not in text.stderr, text.stderr
    metrics = run(config, database, "metrics")
    assert metrics.returncode == 0, metrics.stderr
    samples = parse(metrics.stdout)
    assert value(samples, "retention_backlog_rows", policy="table:readings") == 3
    assert value(samples, "retention_backlog_oldest_age_seconds", policy="table:readings") > 6e10

    dry = run(config, database, "plan", "--json")
    assert dry.returncode == 0, dry.stderr
    result = run(config, database, "run", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert json.loads(dry.stdout)["tables"]["readings"]["deleted"] == 3
    assert summary["tables"]["readings"]["deleted"] == 3
    assert summary["tables"]["readings"]["oldest"].startswith("0001-01-01")
    assert {r[0] for r in conn.execute("SELECT id FROM readings")} == {3, 5}

    after = run(config, database, "status", "--json")
    assert after.returncode == 0, after.stderr
    data = json.loads(after.stdout)
    assert data["backlog"]["tables"]["readings"] == {
        "eligible": 0,
        "oldest": None,
        "oldest_age_seconds": None,
    }
    assert data["runs"][0]["status"] == "succeeded"
    metrics = run(config, database, "metrics")
    assert metrics.returncode == 0, metrics.stderr
    assert value(parse(metrics.stdout), "retention_backlog_rows", policy="table:readings") == 0
