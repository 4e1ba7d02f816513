"""The set-based jobs path against an event inserted for a job while a batch deletes it: the event
must never be left without its job.

With triggers and foreign-key actions off for the batch, no cascade deletes the job's events;
the batch's second statement does, with its own snapshot. Both orders of the race are opened
deterministically with locks:

- the event's transaction takes its foreign-key lock on the job (FOR KEY SHARE) first: the
  batch's delete waits for it, and once it commits, the second statement sees its event;
- the event comes after the batch deleted the job (the batch held, between its two statements,
  on a periodic defer of the job that another session keeps locked): the insert waits for the
  batch's row lock and then fails its foreign-key check, the job being gone.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.helpers import job_ids, make_settings, orphan_events, run_jobs, seed_job


def _wait_for_lock_wait(conn: psycopg.Connection, application: str, outcome: dict) -> str:
    """Until a session of this database named `application` waits for a lock; its query."""
    for _ in range(400):
        assert "error" not in outcome, outcome.get("error")
        row = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND wait_event_type = 'Lock'",
            (application,),
        ).fetchone()
        if row:
            return str(row[0])
        time.sleep(0.025)
    raise AssertionError(f"no session of {application} ever waited for a lock")


def _prune_in_thread(database: str, location: Any, jobs_path: str, outcome: dict):
    settings = make_settings(
        database,
        jobs={"succeeded": "1d"},
        jobs_path=jobs_path,
        lock_timeout="30s",
        max_batch_seconds=60,
    )

    def prune() -> None:
        try:
            outcome["summary"] = run_jobs(settings, location)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=prune)
    thread.start()
    return thread


@pytest.mark.parametrize("jobs_path", ["auto", "normal"], ids=["set-based", "normal"])
def test_an_event_whose_insert_locked_the_job_first_goes_with_it(
    conn, database, location, jobs_path
):
    job = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
    outcome: dict[str, Any] = {}
    with psycopg.connect(database) as inserting:
        # Not a change of state (the job stays eligible); its foreign-key check locks the job.
        inserting.execute(
            "INSERT INTO procrastinate_events (job_id, type, at) "
            "VALUES (%s, 'scheduled', now() - interval '20 days')",
            (job,),
        )
        thread = _prune_in_thread(database, location, jobs_path, outcome)
        try:
            query = _wait_for_lock_wait(conn, "retention", outcome)
            assert "selected and deleted in one statement" in query
            inserting.commit()
        finally:
            thread.join(60)
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]["jobs"]
    assert summary["path"] == ("set-based" if jobs_path == "auto" else "normal")
    assert summary["deleted"] == 1
    assert summary["events"] == 4
    assert job not in job_ids(conn)
    assert orphan_events(conn) == 0


def test_an_event_inserted_after_the_batch_deleted_its_job_is_refused(conn, database, location):
    job = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
    conn.execute(
        "INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id) "
        "VALUES ('app.tick', 1, %s)",
        (job,),
    )
    outcome: dict[str, Any] = {}
    late: dict[str, Any] = {}

    def insert_late() -> None:
        try:
            with psycopg.connect(database, autocommit=True, application_name="late") as other:
                other.execute(
                    "INSERT INTO procrastinate_events (job_id, type, at) "
                    "VALUES (%s, 'scheduled', now())",
                    (job,),
                )
            late["inserted"] = True
        except BaseException as exc:
            late["error"] = exc

    with psycopg.connect(database) as holding:
        holding.execute(
            "SELECT 1 FROM procrastinate_periodic_defers WHERE job_id = %s FOR UPDATE", (job,)
        )
        thread = _prune_in_thread(database, location, "auto", outcome)
        inserter = threading.Thread(target=insert_late)
        try:
            # The batch deleted the job and waits, in its second statement, for the defer.
            query = _wait_for_lock_wait(conn, "retention", outcome)
            assert "set-based path's second statement" in query
            inserter.start()
            _wait_for_lock_wait(conn, "late", late)
            holding.commit()
        finally:
            thread.join(60)
            if inserter.is_alive() or inserter.ident is not None:
                inserter.join(60)
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]["jobs"]
    assert summary["path"] == "set-based"
    assert summary["deleted"] == 1
    assert isinstance(late.get("error"), psycopg.errors.ForeignKeyViolation), late
    assert job not in job_ids(conn)
    assert orphan_events(conn) == 0
    defers = conn.execute("SELECT job_id FROM procrastinate_periodic_defers").fetchall()
    assert defers == [(None,)]
