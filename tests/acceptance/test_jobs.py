"""Job retention through the real CLI: `run --only jobs --json` and `plan`, as JSON and as text."""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
from pathlib import Path

from tests.helpers import job_ids, run_cli, seed_job


def test_cli_run_only_jobs_json_and_plan(conn, database, tmp_path: Path):
    config = tmp_path / "retention.toml"
    config.write_text(
        textwrap.dedent(
            """
            [jobs]
            succeeded = "3d"
            failed = "30d"
            [[jobs.rules]]
            queue = "emails"
            task = "app.send_*"
            succeeded = "1h"
            """
        )
    )
    mail = seed_job(
        conn,
        status="succeeded",
        finished_ago=dt.timedelta(hours=2),
        queue="emails",
        task="app.send_mail",
    )
    report = seed_job(
        conn,
        status="succeeded",
        finished_ago=dt.timedelta(hours=2),
        queue="emails",
        task="app.report",
    )
    failed = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=31), queue="default")
    cancelled = seed_job(conn, status="cancelled", finished_ago=dt.timedelta(days=300))

    plan = run_cli("--config", str(config), "plan", "--json", database=database)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["dry_run"] is True
    assert planned["jobs"]["deleted"] == 2
    assert job_ids(conn) == {mail, report, failed, cancelled}

    human = run_cli("--config", str(config), "plan", database=database, env={"COLUMNS": "200"})
    assert human.returncode == 0, human.stderr
    text = " ".join(re.sub(r"[│┃]", " ", human.stdout).split())
    assert "would delete" in text
    assert "failed: 1, succeeded: 1" in text
    assert "by queue: default: 1, emails: 1" in text
    assert f"e.g. #{failed}, #{mail}" in text  # oldest first

    dry = run_cli(
        "--config", str(config), "run", "--only", "jobs", "--dry-run", "--json", database=database
    )
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["jobs"]["deleted"] == 2
    assert job_ids(conn) == {mail, report, failed, cancelled}

    real = run_cli("--config", str(config), "run", "--only", "jobs", "--json", database=database)
    assert real.returncode == 0, real.stderr
    summary = json.loads(real.stdout)
    assert set(summary) >= {"run_id", "kind", "dry_run", "status", "complete", "jobs"}
    section = summary["jobs"]
    assert isinstance(section["deleted"], int)
    assert section["deleted"] == 2
    assert section["by"] == {
        "status": {"failed": 1, "succeeded": 1},
        "queue": {"default": 1, "emails": 1},
        "task": {"app.send_mail": 1, "app.task": 1},
    }
    assert section["events"] == 6
    assert sorted(section["samples"]) == sorted([mail, failed])
    assert summary["status"] == "succeeded"
    assert summary["complete"] is True
    assert job_ids(conn) == {report, cancelled}
    row = conn.execute(
        "SELECT kind, trigger, dry_run, status FROM retention_runs WHERE id = %s",
        (summary["run_id"],),
    ).fetchone()
    assert row == ("run", "cli", False, "succeeded")
