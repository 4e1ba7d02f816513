"""`retention status` shows the runs of the ledger."""

from __future__ import annotations

from retention.run import runner
from tests.helpers import make_settings, run_cli


def test_status_shows_runs(conn, database, location):
    runner.execute(
        make_settings(database), location, stages=["jobs"], dry_run=False, trigger="cli"
    ).to_json()
    result = run_cli("status", database=database)
    assert result.returncode == 0, result.stderr
    assert "recent runs" in result.stdout
    assert "succeeded" in result.stdout
