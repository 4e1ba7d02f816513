"""`pause_between_batches` through the engine, on the real server: every stage that deletes in
batches pauses between them (jobs, a table policy and its partition drops, the file outbox's
drain, a `[[directories]]` sweep), a dry run counts
the pauses without sleeping, and a pause ends early for an abort or the time budget."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import psycopg

from retention.config import policies
from retention.engine import batches, results
from retention.jobs import prune
from retention.run import runner
from tests.helpers import (
    DAY,
    add_event,
    files_on_disk,
    job_ids,
    make_partitioned,
    make_schema,
    make_settings,
    partitioned_policy,
    partitions_of,
    put,
    records_policy,
    seed_bulk,
    wait_for,
)

JOBS = 35
OLD = dt.timedelta(days=40)


def _seed(conn: psycopg.Connection) -> set[int]:
    spec = {"status": "succeeded", "queue": "default", "task": "app.task", "finished_ago": OLD}
    return set(seed_bulk(conn, [spec] * JOBS))


def _run(database, location, stages, *, dry_run=False, **overrides):
    settings = make_settings(database, batch_size=10, **overrides)
    return runner.execute(
        settings, location, stages=stages, dry_run=dry_run, trigger="cli"
    ).to_json()


def test_a_run_pauses_between_its_batches(conn, database, location):
    seeded = _seed(conn)
    summary = _run(database, location, ["jobs"], pause_between_batches="20ms")
    jobs = summary["jobs"]
    assert jobs["deleted"] == JOBS
    assert jobs["batches"] >= JOBS // 10
    assert jobs["pacing"]["pauses"] == jobs["batches"] - 1
    assert jobs["pacing"]["paused_seconds"] > 0
    assert jobs["pacing"]["lag_waits"] == 0
    assert jobs["pacing"]["max_lag_seconds"] is None
    assert not (job_ids(conn) & seeded)


def test_without_pacing_the_summary_has_no_pacing(conn, database, location):
    _seed(conn)
    jobs = _run(database, location, ["jobs"])["jobs"]
    assert jobs["deleted"] == JOBS
    assert "pacing" not in jobs


def test_a_dry_run_counts_the_pauses_without_sleeping(conn, database, location):
    seeded = _seed(conn)
    jobs = _run(database, location, ["jobs"], dry_run=True, pause_between_batches="2s")["jobs"]
    assert jobs["deleted"] == JOBS
    assert jobs["pacing"]["pauses"] == jobs["batches"] - 1
    assert jobs["pacing"]["pauses"] > 0
    assert jobs["pacing"]["paused_seconds"] == 0
    assert job_ids(conn) >= seeded


def test_table_policies_and_directory_sweeps_pause_too(conn, database, location, tmp_path: Path):
    conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, created_at timestamptz NOT NULL)")
    conn.execute("CREATE INDEX ON notes (created_at, id)")
    conn.execute(
        "INSERT INTO notes (created_at) SELECT now() - interval '40 days' FROM generate_series(1, 25)"
    )
    scratch = tmp_path / "scratch"
    for index in range(25):
        put(scratch, f"old{index}.tmp", age=10 * DAY)
    summary = _run(
        database,
        location,
        ["tables", "directories"],
        pause_between_batches="10ms",
        tables=[{"table": "notes", "timestamp": "created_at", "age": "20d"}],
        directories=[{"root": str(scratch), "age": "1d"}],
    )
    notes = summary["tables"]["notes"]
    assert notes["deleted"] == 25
    assert notes["pacing"]["pauses"] >= 2
    root = summary["directories"]["roots"][str(scratch)]
    assert root["deleted"] == 25
    assert root["pacing"]["pauses"] >= 2
    assert list(scratch.iterdir()) == []


def _limits(**fields) -> batches.Limits:
    return batches.Limits(
        batch_size=10,
        max_batch_seconds=1.0,
        lock_timeout=dt.timedelta(milliseconds=200),
        deadline=fields.pop("deadline", time.monotonic() + 60),
        **fields,
    )


def _walk_in_thread(conn, limits: batches.Limits) -> tuple[threading.Thread, dict]:
    row = conn.execute("SELECT now()").fetchone()
    target = prune.prune_target(conn, policies.JobsPolicy(), row[0])
    outcome: dict = {}

    def work() -> None:
        outcome["result"] = batches.run(conn, target, limits, dry_run=False)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, outcome


def test_an_abort_ends_a_pause(conn, database):
    seeded = _seed(conn)
    abort = threading.Event()
    limits = _limits(pause=dt.timedelta(hours=1), should_abort=abort.is_set)
    thread, outcome = _walk_in_thread(conn, limits)
    with psycopg.connect(database) as watcher:
        wait_for(lambda: seeded - job_ids(watcher), what="the first batch")
    abort.set()
    thread.join(30)
    assert not thread.is_alive(), "the walk slept through the abort"
    result = outcome["result"]
    assert result.stopped is results.StopReason.ABORTED
    assert result.batches == 1
    assert len(seeded - job_ids(conn)) == result.deleted > 0


def test_the_time_budget_ends_a_pause(conn):
    seeded = _seed(conn)
    limits = _limits(pause=dt.timedelta(hours=1), deadline=time.monotonic() + 1)
    thread, outcome = _walk_in_thread(conn, limits)
    thread.join(30)
    assert not thread.is_alive(), "the walk slept past its time budget"
    result = outcome["result"]
    assert result.stopped is results.StopReason.TIME_BUDGET
    assert result.batches == 1
    assert result.pauses == 1
    assert len(seeded - job_ids(conn)) == result.deleted > 0


def test_the_file_outbox_drain_and_partition_drops_pause_too(
    conn, database, location, tmp_path: Path
):
    """The drain's batches and each transaction of partition drops wait as a batch does: the
    drain's first batch after the tables' batches, and every drop after the first."""
    media, parts = tmp_path / "media", tmp_path / "parts"
    make_schema(conn)
    old = [add_event(conn, media, age=dt.timedelta(days=40 + i)) for i in range(3)]
    make_partitioned(conn, parts)
    before = partitions_of(conn)
    summary = _run(
        database,
        location,
        ["tables", "files"],
        pause_between_batches="10ms",
        # Each partition drop in its own transaction: a budget shorter than any drop.
        max_batch_seconds=0.002,
        lock_timeout="1ms",
        tables=[records_policy(media), partitioned_policy(parts)],
    )
    events = summary["tables"]["events"]
    assert events["partitions_dropped"] >= 3
    assert events["partition_pacing"]["pauses"] >= events["partitions_dropped"] - 1
    assert events["partition_pacing"]["paused_seconds"] > 0
    assert partitions_of(conn) < before
    files = summary["files"]
    queued = sum(table["files_queued"] for table in summary["tables"].values())
    assert files["deleted"] == queued > summary["tables"]["app.events"]["files_queued"] > 0
    assert files["pacing"]["pauses"] >= 1
    assert files["pacing"]["paused_seconds"] > 0
    assert {f"events/{e}.jpg" for e in old}.isdisjoint(files_on_disk(media))


def test_unpaced_drains_and_drops_report_no_pacing(conn, database, location, tmp_path: Path):
    media, parts = tmp_path / "media", tmp_path / "parts"
    make_schema(conn)
    add_event(conn, media, age=dt.timedelta(days=40))
    make_partitioned(conn, parts)
    summary = _run(
        database,
        location,
        ["tables", "files"],
        tables=[records_policy(media), partitioned_policy(parts)],
    )
    assert summary["tables"]["events"]["partitions_dropped"] >= 1
    assert "partition_pacing" not in summary["tables"]["events"]
    assert summary["files"]["deleted"] > 0
    assert "pacing" not in summary["files"]
