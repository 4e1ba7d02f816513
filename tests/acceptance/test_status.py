"""`retention status` through the real CLI: real runs, the outbox, backlogs, the run in progress."""

from __future__ import annotations

import datetime as dt
import json

import psycopg

from retention.engine import ledger, results
from tests.helpers import DAY, HOUR, app_config, put, run_cli, seed_events, seed_job, tree


def test_status_shows_real_runs_outbox_and_backlog(conn, database, tmp_path):
    _config, media, exports = app_config(tmp_path)
    conn.execute(
        "CREATE TABLE events (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL "
        "DEFAULT now(), path text)"
    )
    conn.execute("CREATE INDEX ON events (created_at, id)")
    for _ in range(3):
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=2))
    seed_job(conn, status="failed", finished_ago=dt.timedelta(days=20))
    seed_job(conn, status="failed", finished_ago=dt.timedelta(days=2))
    seed_events(conn, media, old=4, fresh=2, days=9)
    put(media, "orphan.jpg", age=5 * HOUR, data=b"o" * 1000)
    put(exports, "report.csv", age=3 * DAY, data=b"r" * 500)

    run = run_cli("run", database=database, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert tree(media) == {"fresh-0.jpg", "fresh-1.jpg"}
    assert tree(exports) == set()

    for _ in range(2):
        seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=5))
    seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=3))
    seed_job(conn, status="todo", finished_ago=None)
    seed_events(conn, media, old=3, fresh=0, days=12)
    conn.execute(
        "INSERT INTO retention_file_outbox (root, path, source, attempts, last_error) "
        "VALUES (%s, 'gone.jpg', 'table:events.path', 2, 'PermissionError: denied')",
        (str(media),),
    )

    shown = run_cli("status", "--json", database=database, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    last = data["runs"][0]
    assert last["status"] == "succeeded"
    assert last["trigger"] == "cli"
    assert not last["dry_run"]
    assert last["deleted"] == {
        "jobs": 4,
        "table:events": 4,
        "files": 4,
        "directories": 1,
        "orphans": 1,
    }
    assert last["bytes"] == 4 * 100 + 500 + 1000
    assert float(last["seconds"]) > 0
    assert data["running"] == []

    jobs_backlog = data["backlog"]["jobs"]
    assert jobs_backlog["succeeded"]["eligible"] == 3
    assert 4.9 * DAY < jobs_backlog["succeeded"]["oldest_age_seconds"] < 5.1 * DAY
    assert jobs_backlog["failed"] == {"eligible": 0, "oldest": None, "oldest_age_seconds": None}
    assert set(jobs_backlog) == {"succeeded", "failed"}, "kept forever: no backlog"
    events = data["backlog"]["tables"]["events"]
    assert events["eligible"] == 3
    assert 11.9 * DAY < events["oldest_age_seconds"] < 12.2 * DAY
    assert data["outbox"]["pending"] == 1
    assert data["outbox"]["failed"] == 1

    text = run_cli("status", database=database, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    for expected in ("recent runs", "backlog", "jobs succeeded", "table events", "file outbox"):
        assert expected in text.stdout, text.stdout
    assert "PermissionError: denied" in text.stdout


def test_status_shows_the_run_in_progress_with_stage_and_percentage(conn, database, tmp_path):
    holder = psycopg.connect(database, autocommit=True)
    try:
        run = ledger.start(
            holder, kind="run", trigger="periodic", dry_run=False, settings={}, exclusive=True
        )
        partial = results.RunSummary(run_id=run.id, kind="run", dry_run=False)
        run.progress("orphans", 0.42, lambda: partial, force=True)
        shown = run_cli("status", "--json", database=database, cwd=tmp_path)
        text = run_cli("status", database=database, cwd=tmp_path)
    finally:
        holder.close()
    data = json.loads(shown.stdout)
    assert [(r["id"], r["stage"], r["progress"]) for r in data["running"]] == [
        (run.id, "orphans", 42.0)
    ]
    assert f"in progress: run #{run.id} (run, periodic), stage orphans, 42%" in text.stdout


def test_a_policy_that_does_not_match_the_database_is_shown_not_fatal(database, tmp_path):
    (tmp_path / "retention.toml").write_text(
        '[[tables]]\ntable = "missing_table"\ntimestamp = "created_at"\n'
    )
    shown = run_cli("status", "--json", database=database, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    problem = json.loads(shown.stdout)["backlog"]["tables"]["(invalid)"]["error"]
    assert "missing_table" in problem
    assert "does not exist" in problem
