"""`retention purge` through the real CLI in a subprocess, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import psycopg
import pytest

from retention.jobs import purge as job_purge
from retention.run import runner
from tests.helpers import cli_env, job_ids, make_settings, orphan_events, run_cli, seed_job

DAY = dt.timedelta(days=1)


@pytest.fixture
def world(conn):
    """A mix of jobs: name -> id."""
    return {
        "mail_ok_old": seed_job(
            conn, status="succeeded", finished_ago=10 * DAY, queue="emails", task="app.send_mail"
        ),
        "mail_failed_old": seed_job(
            conn, status="failed", finished_ago=10 * DAY, queue="emails", task="app.send_mail"
        ),
        "mail_failed_new": seed_job(
            conn, status="failed", finished_ago=DAY / 24, queue="emails", task="app.send_mail"
        ),
        "bulk_cancelled": seed_job(
            conn, status="cancelled", finished_ago=5 * DAY, queue="emails_bulk", task="app.send_sms"
        ),
        "report_aborted": seed_job(
            conn, status="aborted", finished_ago=40 * DAY, queue="reports", task="app.report"
        ),
        "report_no_events": seed_job(
            conn,
            status="succeeded",
            finished_ago=40 * DAY,
            queue="reports",
            task="app.report",
            with_events=False,
        ),
        "mail_todo": seed_job(
            conn, status="todo", finished_ago=None, queue="emails", task="app.send_mail"
        ),
        "report_doing": seed_job(
            conn, status="doing", finished_ago=None, queue="reports", task="app.report"
        ),
    }


def purge(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("purge", *args, database=database, env={"COLUMNS": "200"})


def flat(text: str) -> str:
    """A Rich table's text with borders and line wrapping removed."""
    return " ".join(re.sub(r"[│┃]", " ", text).split())


def purge_json(database: str, *args: str) -> dict:
    result = purge(database, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def remaining(conn: psycopg.Connection, world: dict[str, int]) -> set[str]:
    present = job_ids(conn)
    return {name for name, job_id in world.items() if job_id in present}


def runs(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT kind, trigger, dry_run, status FROM retention_runs ORDER BY id"
    ).fetchall()


UNFINISHED = {"mail_todo", "report_doing"}


@pytest.mark.parametrize(
    ("args", "gone"),
    [
        (("--status", "failed"), {"mail_failed_old", "mail_failed_new"}),
        (
            ("--status", "failed", "--status", "aborted"),
            {"mail_failed_old", "mail_failed_new", "report_aborted"},
        ),
        (("--queue", "emails"), {"mail_ok_old", "mail_failed_old", "mail_failed_new"}),
        (
            ("--queue", "emails*"),
            {"mail_ok_old", "mail_failed_old", "mail_failed_new", "bulk_cancelled"},
        ),
        (("--task", "app.rep?rt"), {"report_aborted", "report_no_events"}),
        (("--task", "*_sms"), {"bulk_cancelled"}),
        (
            ("--finished-before", "2d"),
            {"mail_ok_old", "mail_failed_old", "bulk_cancelled", "report_aborted"},
        ),
        (("--finished-before", "7d"), {"mail_ok_old", "mail_failed_old", "report_aborted"}),
        (
            ("--queue", "emails*", "--finished-before", "2d"),
            {"mail_ok_old", "mail_failed_old", "bulk_cancelled"},
        ),
        (
            ("--queue", "emails", "--status", "failed", "--finished-before", "1d"),
            {"mail_failed_old"},
        ),
        (("--task", "app.send_*", "--status", "cancelled"), {"bulk_cancelled"}),
        (("--queue", "reports", "--status", "failed"), set()),
    ],
)
def test_filters_and_their_intersection(conn, database, world, args, gone):
    summary = purge_json(database, *args, "--yes")
    assert summary["kind"] == "purge"
    assert summary["jobs"]["deleted"] == len(gone)
    assert remaining(conn, world) == set(world) - gone
    assert runs(conn) == [("purge", "cli", False, "succeeded")]


def test_job_ids_and_a_timestamp(conn, database, world):
    summary = purge_json(
        database,
        "--job-id",
        str(world["mail_ok_old"]),
        "--job-id",
        str(world["report_no_events"]),
        "--job-id",
        str(world["mail_failed_new"]),
        "--yes",
    )
    assert summary["jobs"]["deleted"] == 3
    assert remaining(conn, world) == set(world) - {
        "mail_ok_old",
        "report_no_events",
        "mail_failed_new",
    }
    cutoff = (dt.datetime.now(dt.UTC) - 20 * DAY).isoformat()
    summary = purge_json(database, "--finished-before", cutoff, "--yes")
    assert summary["jobs"]["deleted"] == 1
    assert "report_aborted" not in remaining(conn, world)
    summary = purge_json(
        database, "--job-id", str(world["mail_failed_old"]), "--queue", "reports", "--yes"
    )
    assert summary["jobs"]["deleted"] == 0
    assert "mail_failed_old" in remaining(conn, world)


@pytest.mark.parametrize("jobs_path", ["auto", "normal"], ids=["set-based", "normal"])
def test_events_go_and_periodic_defers_are_unlinked(conn, database, world, jobs_path):
    """On both jobs paths (the tests' superuser takes the set-based one with "auto")."""
    conn.execute(
        "INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id) "
        "VALUES ('app.report', 1, %s)",
        (world["report_aborted"],),
    )
    result = run_cli(
        "purge",
        "--job-id",
        str(world["report_aborted"]),
        "--yes",
        "--json",
        database=database,
        env={"RETENTION_JOBS_PATH": jobs_path},
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["jobs"]["path"] == ("set-based" if jobs_path == "auto" else "normal")
    assert summary["jobs"]["deleted"] == 1
    assert summary["jobs"]["events"] == 4  # deferred, started, abort_requested, aborted
    assert conn.execute("SELECT job_id FROM procrastinate_periodic_defers").fetchall() == [(None,)]
    assert conn.execute(
        "SELECT count(*) FROM procrastinate_events WHERE job_id = %s", (world["report_aborted"],)
    ).fetchone() == (0,)
    assert orphan_events(conn) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "purge needs at least one filter"),
        (("--status", "todo"), "cancel them first"),
        (("--status", "doing", "--queue", "reports"), "--status doing"),
        (("--status", "failed", "--status", "todo"), "todo jobs are not finished"),
        (("--status", "finished"), "--status finished: unknown status"),
        (("--status", "aborting"), "use one of succeeded, failed, cancelled, aborted"),
        (("--job-id", "{mail_todo}"), "#{mail_todo} (todo)"),
        (("--job-id", "{report_doing}", "--job-id", "{mail_ok_old}"), "#{report_doing} (doing)"),
        (("--job-id", "{mail_ok_old}", "--job-id", "999999"), "no job with id 999999"),
        (("--queue", "nothing*"), "--queue 'nothing*' matches no existing queue"),
        (("--task", "app.send_fax"), "--task 'app.send_fax' matches no existing task"),
        (("--queue", "[emails"), "unclosed '['"),
        (("--finished-before", "last tuesday"), "--finished-before: 'last tuesday' is neither"),
        (("--finished-before", "0d"), "--finished-before"),
        (("--job-id", "seven"), "Invalid value for '--job-id'"),
    ],
)
def test_refusals_exit_2_and_touch_nothing(conn, database, world, args, message):
    args = tuple(arg.format(**world) for arg in args)
    before = job_ids(conn)
    result = purge(database, *args, "--yes")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message.format(**world) in result.stderr
    assert job_ids(conn) == before
    assert runs(conn) == []


def test_dry_run_deletes_nothing_and_reports_the_count(conn, database, world):
    before = job_ids(conn)
    summary = purge_json(database, "--queue", "emails*", "--dry-run")
    assert summary["dry_run"] is True
    assert summary["jobs"]["deleted"] == 4
    oldest = dt.datetime.fromisoformat(summary["jobs"]["oldest"])
    assert abs(oldest - (dt.datetime.now(dt.UTC) - 10 * DAY)) < dt.timedelta(minutes=5)
    assert summary["jobs"]["by"]["status"] == {"cancelled": 1, "failed": 2, "succeeded": 1}
    assert job_ids(conn) == before
    human = purge(database, "--queue", "emails*", "--dry-run")
    assert human.returncode == 0, human.stderr
    assert "would delete" in human.stdout
    assert "dry run, nothing deleted" in human.stdout
    assert f"#{world['mail_ok_old']}" in flat(human.stdout)
    assert "by queue: emails: 3, emails_bulk: 1" in flat(human.stdout)
    assert job_ids(conn) == before
    assert runs(conn) == [("purge", "cli", True, "succeeded")] * 2
    real = purge_json(database, "--queue", "emails*", "--yes")
    assert real["jobs"]["deleted"] == 4
    assert {k: real["jobs"][k] for k in ("by", "events", "samples", "oldest")} == {
        k: summary["jobs"][k] for k in ("by", "events", "samples", "oldest")
    }


def test_without_a_terminal_there_is_no_prompt(conn, database, world):
    result = purge(database, "--status", "cancelled")
    assert result.returncode == 0, result.stderr
    assert "?" not in result.stdout
    assert "deleted" in result.stdout
    assert "bulk_cancelled" not in remaining(conn, world)
    row = conn.execute(
        "SELECT kind, dry_run, status, settings->'purge' FROM retention_runs"
    ).fetchone()
    assert row is not None
    kind, dry_run, status, filters = row
    assert (kind, dry_run, status) == ("purge", False, "succeeded")
    assert filters["statuses"] == ["cancelled"]
    summary = conn.execute("SELECT summary FROM retention_runs").fetchone()[0]  # type: ignore[index]
    assert summary["jobs"]["deleted"] == 1


def on_a_terminal(database: str, answer: str, *args: str) -> tuple[int, str]:
    """Run purge with a pseudo-terminal as stdin and stdout; type `answer` at the prompt."""
    master, slave = pty.openpty()
    env = cli_env(database, COLUMNS="200", TERM="dumb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "retention", "purge", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(master, answer.encode() + b"\n")
                answered = True
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=30)
    os.close(master)
    return code, output.decode(errors="replace")


def test_on_a_terminal_it_asks_first(conn, database, world):
    code, output = on_a_terminal(database, "n", "--status", "failed")
    assert "delete 2 job(s) and their events?" in output
    assert "cancelled: nothing deleted" in output
    assert code == 1
    assert {"mail_failed_old", "mail_failed_new"} <= remaining(conn, world)

    code, output = on_a_terminal(database, "y", "--status", "failed")
    assert code == 0, output
    assert not {"mail_failed_old", "mail_failed_new"} & remaining(conn, world)

    code, output = on_a_terminal(database, "", "--status", "cancelled", "--yes")
    assert code == 0, output
    assert "[y/N]" not in output
    assert "bulk_cancelled" not in remaining(conn, world)
    kinds = [(kind, dry_run) for kind, _, dry_run, _ in runs(conn)]
    assert kinds == [("purge", True), ("purge", True), ("purge", False), ("purge", False)]


def test_the_task_and_the_cli_share_runner_purge(conn, database, location, world):
    filters = job_purge.PurgeFilters(queue="emails*", statuses=("failed",))
    settings = make_settings(database)
    preview = runner.purge(settings, location, filters, dry_run=True, trigger="deferred").to_json()
    cli = purge_json(database, "--queue", "emails*", "--status", "failed", "--dry-run")
    assert preview["jobs"]["deleted"] == cli["jobs"]["deleted"] == 2
    assert preview["jobs"]["samples"] == cli["jobs"]["samples"]
    with pytest.raises(Exception, match="cancel them first") as info:
        runner.purge(
            settings,
            location,
            job_purge.PurgeFilters(job_ids=(world["mail_todo"],)),
            dry_run=False,
            trigger="deferred",
        ).to_json()
    assert getattr(info.value, "exit_code", None) == 2
    assert world["mail_todo"] in job_ids(conn)
