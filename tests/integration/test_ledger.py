"""The run ledger, in-process: a run's row, a dead session's run abandoned, one real run at a time."""

from __future__ import annotations

import time

import psycopg
import pytest

from retention import errors
from retention.engine import ledger
from retention.run import runner
from tests.helpers import make_settings


def test_a_run_is_recorded_with_settings_summary_and_trigger(conn, database, location):
    settings = make_settings(database, batch_size=7)
    summary = runner.execute(
        settings, location, stages=["jobs"], dry_run=True, trigger="cli"
    ).to_json()
    row = ledger.get(conn, summary["run_id"])
    assert row is not None
    assert row["status"] == "succeeded"
    assert row["trigger"] == "cli"
    assert row["dry_run"] is True
    assert row["finished_at"] is not None
    assert row["progress"] == 100.0
    assert row["settings"]["batch_size"] == 7
    assert row["summary"]["jobs"]["deleted"] == 0


def test_a_run_whose_session_died_is_abandoned_by_the_next(conn, database, location):
    dead = psycopg.connect(database, autocommit=True)
    run = ledger.start(dead, kind="run", trigger="cli", dry_run=False, settings={}, exclusive=True)
    dead.close()
    time.sleep(0.2)
    summary = runner.execute(
        make_settings(database), location, stages=["jobs"], dry_run=False, trigger="cli"
    ).to_json()
    row = ledger.get(conn, run.id)
    assert row is not None
    assert row["status"] == "abandoned"
    assert "killed" in row["error"]
    assert ledger.get(conn, summary["run_id"])["status"] == "succeeded"


def test_two_real_runs_at_once_are_refused_dry_runs_are_not(conn, database, location):
    holder = psycopg.connect(database, autocommit=True)
    try:
        ledger.start(holder, kind="run", trigger="cli", dry_run=False, settings={}, exclusive=True)
        with pytest.raises(errors.RunFailed, match="in progress"):
            runner.execute(
                make_settings(database), location, stages=["jobs"], dry_run=False, trigger="cli"
            ).to_json()
        preview = runner.execute(
            make_settings(database), location, stages=["jobs"], dry_run=True, trigger="cli"
        ).to_json()
        assert preview["status"] == "succeeded"
    finally:
        holder.close()
