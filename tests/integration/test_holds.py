"""Legal holds in-process: every delete path leaves what an active hold names (jobs by id, queue
or task; table rows by key or filter, with their children and files; partitions holding them),
dry runs count them, a released or expired hold no longer holds. Real PostgreSQL, real files."""

from __future__ import annotations

import datetime as dt

import pytest

from retention import errors, holds
from retention.engine import batches
from retention.jobs import prune, purge
from retention.run import runner
from tests.helpers import (
    add_event,
    files_on_disk,
    ids,
    job_ids,
    make_partitioned,
    make_schema,
    make_settings,
    partitions_of,
    prune_limits,
    seed_job,
)
from tests.helpers import partitioned_policy as partitioned
from tests.helpers import records_policy as records

OLD = dt.timedelta(days=40)


def _jobs(conn, n, **kw):
    return [seed_job(conn, status="succeeded", finished_ago=OLD, **kw) for _ in range(n)]


def _run(database, location, *, dry_run=False, stages=("jobs",), **kw):
    settings = make_settings(database, jobs={"succeeded": "30d"}, batch_size=2, **kw)
    return runner.execute(
        settings, location, stages=list(stages), dry_run=dry_run, trigger="cli"
    ).to_json()


def test_the_prune_leaves_held_jobs_and_a_dry_run_counts_them(conn, database, location):
    by_id = _jobs(conn, 2)
    by_queue = _jobs(conn, 2, queue="legal-1")
    by_task = _jobs(conn, 2, task="reports.monthly")
    free = _jobs(conn, 3)
    settings = make_settings(database)
    holds.add(conn, settings, job_ids=by_id, reason="case 17")
    holds.add(conn, settings, queue="legal-*", reason="case 18")
    holds.add(conn, settings, task="reports.*", reason="audit")

    plan = _run(database, location, dry_run=True)["jobs"]
    assert plan["deleted"] == 3
    assert plan["held"] == 6

    real = _run(database, location)["jobs"]
    assert real["deleted"] == 3
    assert real["held"] == 6
    assert job_ids(conn) == set(by_id + by_queue + by_task)
    assert not set(free) & job_ids(conn)


def test_released_and_expired_holds_no_longer_hold(conn, database, location):
    released = _jobs(conn, 2)
    expired = _jobs(conn, 1)
    kept = _jobs(conn, 1)
    settings = make_settings(database)
    hold = holds.add(conn, settings, job_ids=released, reason="case 1")
    gone = holds.add(conn, settings, job_ids=expired, reason="case 2", until="1h")
    holds.add(conn, settings, job_ids=kept, reason="case 3", until="30d")
    conn.execute(
        "UPDATE retention_holds SET expires_at = now() - interval '1 second' WHERE id = %s",
        (gone.id,),
    )
    assert _run(database, location)["jobs"]["deleted"] == 1

    holds.release(conn, hold.id)
    assert _run(database, location)["jobs"]["deleted"] == 2
    assert job_ids(conn) == set(kept)
    assert [h.id for h in holds.list_holds(conn)] != [hold.id]
    states = {h.id: h.state for h in holds.list_holds(conn, include_inactive=True)}
    assert states[hold.id] == "released"
    assert states[gone.id] == "expired"


def test_a_hold_placed_during_a_run_protects_the_later_batches(conn, database, location):
    """The delete statement reads the holds: a hold placed after the target was built (the
    statements composed, as at the start of a run) still keeps its jobs."""
    old = _jobs(conn, 6)
    settings = make_settings(database, jobs={"succeeded": "30d"})
    now = conn.execute("SELECT now()").fetchone()[0]
    target = prune.prune_target(conn, settings.jobs, now)
    holds.add(conn, settings, job_ids=old[3:], reason="placed mid-run")
    result = batches.run(
        conn,
        target,
        prune_limits(batch_size=2, max_batch_seconds=1.0, lock_timeout=1.0),
        dry_run=False,
    )
    assert result.deleted == 3
    assert job_ids(conn) == set(old[3:])


def test_purge_skips_held_jobs_and_says_which_hold(conn, database, location):
    jobs = _jobs(conn, 4)
    settings = make_settings(database)
    hold = holds.add(conn, settings, job_ids=jobs[:1], reason="case 9")
    filters = purge.PurgeFilters(job_ids=tuple(jobs))
    summary = runner.purge(settings, location, filters, dry_run=True, trigger="cli").to_json()
    assert summary["jobs"]["deleted"] == 3
    assert summary["jobs"]["held"] == 1
    assert summary["jobs"]["held_by"] == [{"hold": hold.id, "reason": "case 9", "jobs": 1}]

    summary = runner.purge(settings, location, filters, dry_run=False, trigger="cli").to_json()
    assert summary["jobs"]["deleted"] == 3
    assert summary["jobs"]["held_by"] == [{"hold": hold.id, "reason": "case 9", "jobs": 1}]
    assert job_ids(conn) == {jobs[0]}


def test_purge_delete_rechecks_holds_at_delete_time(conn, database):
    """A hold placed between a purge batch's select and its delete keeps the job."""
    jobs = _jobs(conn, 2)
    settings = make_settings(database)
    target = purge.purge_target(purge.PurgeFilters(job_ids=tuple(jobs)))
    holds.add(conn, settings, job_ids=jobs[:1], reason="late")
    with conn.transaction(), conn.cursor() as cur:
        counts = target.deleter.delete(cur, jobs)
    assert counts["deleted"] == 1
    assert job_ids(conn) == {jobs[0]}


def test_held_rows_keep_their_children_and_files(conn, database, location, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    old = [add_event(conn, root, age=dt.timedelta(days=40 + i), kind="info") for i in range(4)]
    alarm = add_event(conn, root, age=dt.timedelta(days=50), kind="alarm")
    before = files_on_disk(root)
    settings = make_settings(database, tables=[records(root)])
    holds.add(conn, settings, table="app.events", keys=[str(old[0])], reason="case 4")
    holds.add(conn, settings, table="app.events", where={"kind": "alarm"}, reason="case 5")

    summary = _run(database, location, dry_run=True, stages=("tables",), tables=[records(root)])
    assert summary["tables"]["app.events"]["deleted"] == 3
    assert summary["tables"]["app.events"]["held"] == 2

    summary = _run(database, location, stages=("tables", "files"), tables=[records(root)])
    section = summary["tables"]["app.events"]
    assert section["deleted"] == 3
    assert section["held"] == 2
    assert ids(conn, "app.events") == {old[0], alarm}
    children = {r[0] for r in conn.execute("SELECT event_id FROM app.detections")}
    assert children == {old[0], alarm}
    kept = {p for p in before if f"/{old[0]}." in f"/{p}" or f"/{old[0]}-" in f"/{p}"}
    kept |= {p for p in before if f"/{alarm}." in f"/{p}" or f"/{alarm}-" in f"/{p}"}
    assert len(kept) == 8
    assert files_on_disk(root) == kept
    queued = conn.execute("SELECT count(*) FROM retention_file_outbox").fetchone()[0]
    assert queued == 0


def test_a_partition_holding_a_held_row_is_pruned_row_by_row(conn, database, location, tmp_path):
    root = tmp_path / "media"
    make_partitioned(conn, root)
    held_id, held_at = conn.execute(
        "SELECT id, created_at FROM events_9 ORDER BY id LIMIT 1"
    ).fetchone()
    others = {r[0] for r in conn.execute("SELECT id FROM events_9 WHERE id <> %s", (held_id,))}
    settings = make_settings(database, tables=[partitioned(root)], batch_size=4)
    holds.add(conn, settings, table="events", keys=[str(held_id)], reason="case 6")

    plan = runner.execute(settings, location, stages=["tables"], dry_run=True, trigger="cli")
    names = {p["name"] for p in plan.to_json()["tables"]["events"]["partitions"]}
    assert "public.events_9" not in names
    assert "public.events_10" in names

    summary = runner.execute(
        settings, location, stages=["tables", "files"], dry_run=False, trigger="cli"
    )
    section = summary.to_json()["tables"]["events"]
    assert "events_9" in partitions_of(conn)
    assert "events_10" not in partitions_of(conn)
    assert section["held"] == 1
    left = {r[0] for r in conn.execute("SELECT id FROM events_9")}
    assert left == {held_id}
    assert not others & left
    children = conn.execute(
        "SELECT count(*) FROM detections WHERE event_id = %s AND event_at = %s", (held_id, held_at)
    ).fetchone()[0]
    assert children == 1
    assert (root / f"img/{held_id}.jpg").exists()


def test_a_hold_placed_after_the_partition_check_keeps_its_partition(
    conn, database, location, tmp_path
):
    from retention.tables import partitions, planning

    root = tmp_path / "media"
    make_partitioned(conn, root)
    settings = make_settings(database, tables=[partitioned(root)], batch_size=4)
    (plan,) = planning.check(conn, settings)
    cutoff = conn.execute("SELECT now() - interval '132 hours'").fetchone()[0]
    droppable = partitions.droppable(conn, plan, cutoff)
    assert "public.events_9" in {p.display for p in droppable}
    held_id = conn.execute("SELECT id FROM events_9 LIMIT 1").fetchone()[0]
    holds.add(conn, settings, table="events", keys=[str(held_id)], reason="late")
    limits = prune_limits(batch_size=4, max_batch_seconds=1.0, lock_timeout=1.0)
    drops = partitions.drop(conn, plan, droppable, cutoff, limits, dry_run=False, run_id=None)
    assert "public.events_9" not in {p.name for p in drops.dropped}
    assert "events_9" in partitions_of(conn)


def test_a_forged_hold_only_keeps(conn, database, location):
    """A hold row no statement can read (a key that does not cast) makes the delete fail:
    nothing is deleted, never more."""
    jobs = _jobs(conn, 3)
    conn.execute(
        "INSERT INTO retention_holds (job_ids, reason, placed_by) VALUES (ARRAY[NULL]::bigint[], "
        "'forged', 'x')"
    )
    assert _run(database, location)["jobs"]["deleted"] == 0
    assert job_ids(conn) == set(jobs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of"),
        ({"job_ids": [1], "queue": "q"}, "exactly one of"),
        ({"queue": "x", "reason": " "}, "--reason is required"),
        ({"queue": "[x"}, "unclosed"),
        ({"job_ids": [10**12]}, "no job with id"),
        ({"queue": "x", "until": "2001-01-01"}, "in the past"),
        ({"queue": "x", "until": "soon"}, "neither a timestamp"),
        ({"table": "app.nothing", "keys": ["1"]}, "not the table of any enabled table policy"),
        ({"table": "app.events", "keys": ["abc"]}, "--key 'abc' is not a valid bigint"),
        ({"table": "app.events"}, "name its rows with --key"),
        ({"table": "app.events", "where": '{"nope": 1}'}, "has no column 'nope'"),
        ({"table": "app.events", "where": "{bad"}, "is not JSON"),
        ({"table": "app.events", "where": '{"created_at": "x"}'}, "is not a valid timestamp"),
        ({"keys": ["1"], "queue": "x"}, "give --table too"),
    ],
)
def test_bad_holds_are_refused_and_nothing_is_written(conn, database, tmp_path, kwargs, message):
    make_schema(conn)
    settings = make_settings(database, tables=[records(tmp_path)])
    arguments = {"reason": "case", **kwargs}
    with pytest.raises(errors.ConfigError, match=message):
        holds.add(conn, settings, **arguments)
    assert conn.execute("SELECT count(*) FROM retention_holds").fetchone()[0] == 0
