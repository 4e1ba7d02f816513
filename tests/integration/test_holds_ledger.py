"""The holds in force are in every run's summary and so in its ledger row: how many, by kind,
and their ids; a released hold is gone from the next run's. Real PostgreSQL."""

from __future__ import annotations

import datetime as dt

from retention import holds
from retention.run import runner
from tests.helpers import make_schema, make_settings, records_policy, seed_job


def _ledger_holds(conn, run_id):
    row = conn.execute("SELECT summary FROM retention_runs WHERE id = %s", (run_id,)).fetchone()
    return row[0]["holds"]


def test_the_ledger_row_records_the_holds_in_force(conn, database, location, tmp_path):
    make_schema(conn)
    job = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=40))
    settings = make_settings(database, jobs={"succeeded": "30d"}, tables=[records_policy(tmp_path)])
    by_id = holds.add(conn, settings, job_ids=[job], reason="case 30")
    by_queue = holds.add(conn, settings, queue="legal-*", reason="case 31")
    on_rows = holds.add(conn, settings, table="app.events", keys=["1"], reason="case 32")
    released = holds.add(conn, settings, task="reports.*", reason="case 33")
    holds.release(conn, released.id)

    for dry_run in (True, False):
        summary = runner.execute(
            settings, location, stages=["jobs"], dry_run=dry_run, trigger="cli"
        ).to_json()
        expected = {
            "active": 3,
            "jobs": 2,
            "rows": 1,
            "ids": sorted([by_id.id, by_queue.id, on_rows.id]),
        }
        assert summary["holds"] == expected
        assert _ledger_holds(conn, summary["run_id"]) == expected

    holds.release(conn, by_queue.id)
    summary = runner.execute(settings, location, stages=["jobs"], dry_run=False, trigger="cli")
    assert _ledger_holds(conn, summary.run_id) == {
        "active": 2,
        "jobs": 1,
        "rows": 1,
        "ids": sorted([by_id.id, on_rows.id]),
    }


def test_no_holds_is_recorded_as_none(database, location):
    settings = make_settings(database, jobs={"succeeded": "30d"})
    summary = runner.execute(settings, location, stages=["jobs"], dry_run=True, trigger="cli")
    assert summary.to_json()["holds"] == {"active": 0, "jobs": 0, "rows": 0, "ids": []}
