"""`keep_last` / `max_count` through the real CLI: the plan (a dry run) says what the run then
deletes, the newest rows of each camera stay, and bad counts or `per` columns exit 2 naming the
key, with nothing deleted."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.helpers import run_cli

SCHEMA = """
CREATE SCHEMA cams;
CREATE TABLE cams.shots (
    id bigint PRIMARY KEY,
    camera_id int,
    taken_at timestamptz NOT NULL
);
CREATE INDEX ON cams.shots (camera_id, taken_at, id);
-- Camera 1: 6 shots 40..45 days old; camera 2: 2 shots 50 days old; camera 3: 3 fresh shots.
INSERT INTO cams.shots
SELECT i, 1, now() - (39 + i) * interval '1 day' FROM generate_series(1, 6) i;
INSERT INTO cams.shots VALUES (11, 2, now() - interval '50 days'), (12, 2, now() - interval '50 days');
INSERT INTO cams.shots SELECT 20 + i, 3, now() - i * interval '1 hour' FROM generate_series(1, 3) i;
"""
POLICY = '[[tables]]\ntable = "cams.shots"\ntimestamp = "taken_at"\n'


def _seed(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(SCHEMA)


def _ids(database: str) -> set[int]:
    with psycopg.connect(database) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM cams.shots")}


def test_plan_then_run_keep_the_newest_of_each_camera(tmp_path, database):
    _seed(database)
    path = tmp_path / "retention.toml"
    path.write_text(POLICY + 'age = "30d"\nkeep_last = 2\nper = ["camera_id"]\n')

    plan = run_cli("--config", str(path), "plan", "--json", database=database)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["tables"]["cams.shots"]["deleted"] == 4
    assert len(_ids(database)) == 11

    run = run_cli("--config", str(path), "run", "--json", database=database)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["tables"]["cams.shots"]["deleted"] == 4
    # Camera 1 keeps its newest two (1 and 2), camera 2 both its shots, camera 3 its fresh ones.
    assert _ids(database) == {1, 2, 11, 12, 21, 22, 23}

    path.write_text(POLICY + 'max_count = 1\nper = ["camera_id"]\n')
    run = run_cli("--config", str(path), "run", "--json", database=database)
    assert run.returncode == 0, run.stderr
    assert _ids(database) == {1, 12, 21}  # ties: the greater key is the newer


@pytest.mark.parametrize(
    ("lines", "key", "says"),
    [
        ("keep_last = 0\n", "tables.0.keep_last", "1 or more"),
        ("keep_last = 2.5\n", "tables.0.keep_last", "not a count"),
        ("keep_last = true\n", "tables.0.keep_last", "not a count"),
        ('max_count = "10"\n', "tables.0.max_count", "not a count"),
        ("keep_last = 1\nmax_count = 2\n", "tables.0", "both set"),
        ('per = ["camera_id"]\n', "tables.0", "set one of them"),
        ('keep_last = 2\nper = ["camera"]\n', "per", "no column 'camera'"),
    ],
)
def test_bad_counts_exit_2_naming_the_key_nothing_deleted(tmp_path, database, lines, key, says):
    _seed(database)
    path = tmp_path / "retention.toml"
    path.write_text(POLICY + 'age = "30d"\n' + lines)
    for command in (["plan"], ["run"]):
        result = run_cli("--config", str(path), *command, database=database)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert key in result.stderr, result.stderr
        assert says in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert len(_ids(database)) == 11
