"""Job retention against a real PostgreSQL, in-process: per-status ages and rules, what is never
touched, dry runs, stopping and resuming, Procrastinate's events and periodic defers."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from retention.config import policies
from retention.engine import batches, ledger
from retention.jobs import deleter, prune
from tests.helpers import (
    job_ids,
    jobs_policy,
    make_settings,
    prune_limits,
    run_jobs,
    seed_bulk,
    seed_job,
    shares_final_transaction,
)

FINAL = policies.FINAL_STATUSES
ALL_STATUSES = ("todo", "doing", *FINAL)
QUEUES = ("emails", "emails_bulk", "default", "reports")
TASKS = ("app.send_mail", "app.send_sms", "app.report", "other.cleanup")
# Policy ages are whole hours; finish ages sit 30 minutes off every whole hour, so no job is
# within 30 minutes of any cutoff.
AGES = ("forever", "1h", "6h", "1d", "3d", "7d", "30d")
FINISH_AGES = tuple(dt.timedelta(hours=h, minutes=30) for h in (0, 3, 12, 24, 48, 100, 200, 1000))


def expected_kept(
    policy: policies.JobsPolicy, specs: list[dict[str, Any]], ids: list[int]
) -> set[int]:
    kept = set()
    for job_id, spec in zip(ids, specs, strict=True):
        if spec["status"] not in FINAL or not spec.get("events", True):
            kept.add(job_id)
            continue
        age = policy.age_for(spec["status"], spec["queue"], spec["task"])
        if age is None or spec["finished_ago"] < age:
            kept.add(job_id)
    return kept


def reset(conn: psycopg.Connection) -> None:
    conn.execute(
        "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, "
        "retention_runs, retention_archive_files, retention_archived_files"
    )


job_specs = st.lists(
    st.fixed_dictionaries(
        {
            "status": st.sampled_from(ALL_STATUSES),
            "queue": st.sampled_from(QUEUES),
            "task": st.sampled_from(TASKS),
            "finished_ago": st.sampled_from(FINISH_AGES),
            "events": st.sampled_from((True, True, True, False)),
            "via_todo": st.booleans(),
            "scheduled_after": st.sampled_from((None, None, dt.timedelta(days=2))),
            "rewritten": st.booleans(),
        }
    ).map(lambda s: {**s, "via_todo": s["via_todo"] and s["status"] in ("succeeded", "failed")}),
    min_size=1,
    max_size=60,
)
ages = st.sampled_from(AGES)
matchers = st.one_of(
    st.fixed_dictionaries({"queue": st.sampled_from(("emails*", "emails", "rep?rts", "[de]*"))}),
    st.fixed_dictionaries(
        {"task": st.sampled_from(("app.send_*", "app.*", "*report", "other.[!x]*"))}
    ),
    st.fixed_dictionaries(
        {
            "queue": st.sampled_from(("emails*", "[de]*")),
            "task": st.sampled_from(("app.send_*", "*report")),
        }
    ),
)
rule_ages = st.dictionaries(st.sampled_from(FINAL), ages, min_size=1)
rules = st.lists(
    st.tuples(matchers, rule_ages).map(lambda pair: {**pair[0], **pair[1]}), max_size=4
)
policies = st.fixed_dictionaries({}, optional={status: ages for status in FINAL}).flatmap(
    lambda top: rules.map(lambda rs: {**top, "rules": rs})
)


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@pytest.mark.parametrize("jobs_path", ["auto", "normal"], ids=["set-based", "normal"])
@given(specs=job_specs, jobs_config=policies)
def test_remaining_jobs_match_the_reference_model(
    conn, database, location, specs, jobs_config, jobs_path
):
    """On both jobs paths (the tests' role is a superuser: "auto" takes the set-based one)."""
    reset(conn)
    ids = seed_bulk(conn, specs)
    # Every third job is a periodic defer's: unlinked when it goes, left as it is when it stays.
    conn.execute(
        "INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id) "
        "SELECT 'app.tick', n, job_id FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(job_id, n)",
        (ids[::3],),
    )
    settings = make_settings(database, jobs=jobs_config, batch_size=17, jobs_path=jobs_path)
    kept = expected_kept(settings.jobs, specs, ids)

    preview = run_jobs(settings, location, dry_run=True)
    assert job_ids(conn) == set(ids)
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    counted = prune.eligible(conn, settings.jobs, now)
    assert {status: count for status, (count, _) in counted.items()} == preview["jobs"]["by"].get(
        "status", {}
    )
    if counted:
        oldest = min(first for _, first in counted.values() if first is not None)
        assert oldest.isoformat() == preview["jobs"]["oldest"]
    doomed = sorted(set(ids) - kept)
    events = conn.execute(
        "SELECT count(*) FROM procrastinate_events WHERE job_id = ANY(%s)", (doomed,)
    ).fetchone()[0]  # type: ignore[index]
    summary = run_jobs(settings, location)

    assert summary["jobs"]["path"] == ("set-based" if jobs_path == "auto" else "normal")
    assert preview["jobs"]["path"] == summary["jobs"]["path"]
    assert job_ids(conn) == kept
    defers = dict(
        conn.execute("SELECT defer_timestamp, job_id FROM procrastinate_periodic_defers").fetchall()
    )
    assert defers == {
        n: (job_id if job_id in kept else None) for n, job_id in enumerate(ids[::3], start=1)
    }
    assert summary["jobs"]["deleted"] == len(ids) - len(kept)
    assert summary["jobs"].get("events", 0) == events
    assert preview["jobs"].get("events", 0) == events
    assert preview["jobs"]["deleted"] == summary["jobs"]["deleted"]
    assert preview["jobs"]["by"] == summary["jobs"]["by"]
    gone = [spec for job_id, spec in zip(ids, specs, strict=True) if job_id not in kept]
    for group, key in (("status", "status"), ("queue", "queue"), ("task", "task")):
        expected: dict[str, int] = {}
        for spec in gone:
            expected[spec[key]] = expected.get(spec[key], 0) + 1
        assert summary["jobs"]["by"].get(group, {}) == expected
    orphans = conn.execute(
        "SELECT count(*) FROM procrastinate_events e "
        "WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.id = e.job_id)"
    ).fetchone()
    assert orphans == (0,)


def test_defaults_without_a_jobs_section(conn, database, location):
    days = dt.timedelta(days=1)
    specs = [
        {
            "status": status,
            "queue": "q",
            "task": "t",
            "finished_ago": n * days + dt.timedelta(hours=1),
        }
        for status in FINAL
        for n in (2, 3, 6, 7, 29, 30)
    ]
    ids = seed_bulk(conn, specs)
    run_jobs(make_settings(database), location)
    remaining = {
        (spec["status"], spec["finished_ago"].days)
        for job_id, spec in zip(ids, specs, strict=True)
        if job_id in job_ids(conn)
    }
    assert remaining == {
        ("succeeded", 2),
        ("failed", 2),
        ("failed", 3),
        ("failed", 6),
        ("failed", 7),
        ("failed", 29),
        ("cancelled", 2),
        ("cancelled", 3),
        ("cancelled", 6),
        ("aborted", 2),
        ("aborted", 3),
        ("aborted", 6),
    }


def test_a_status_left_out_or_forever_is_kept(conn, database, location):
    old = dt.timedelta(days=400)
    succeeded = seed_job(conn, status="succeeded", finished_ago=old)
    failed = seed_job(conn, status="failed", finished_ago=old)
    cancelled = seed_job(conn, status="cancelled", finished_ago=old)
    aborted = seed_job(conn, status="aborted", finished_ago=old)
    settings = make_settings(database, jobs={"succeeded": "1d", "failed": "forever"})
    summary = run_jobs(settings, location)
    assert summary["jobs"]["deleted"] == 1
    assert job_ids(conn) == {failed, cancelled, aborted}
    assert succeeded not in job_ids(conn)


def test_unfinished_jobs_are_never_deleted(conn, database, location):
    todo = seed_job(conn, status="todo", finished_ago=dt.timedelta(days=500))
    doing = seed_job(conn, status="doing", finished_ago=dt.timedelta(days=500))
    done = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=500))
    # A job that failed long ago, was retried by hand and is queued again.
    requeued = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=500))
    conn.execute("SELECT procrastinate_retry_job_v2(%s, NULL, NULL, NULL, NULL)", (requeued,))
    settings = make_settings(
        database,
        jobs={"succeeded": "1s", "failed": "1s", "cancelled": "1s", "aborted": "1s"},
    )
    summary = run_jobs(settings, location)
    assert summary["jobs"]["deleted"] == 1
    assert job_ids(conn) == {todo, doing, requeued}
    assert done not in job_ids(conn)


def age_events(conn: psycopg.Connection, job_id: int, ages: list[dt.timedelta]) -> None:
    """Date the job's events, in id order, `ages` before now."""
    events = [
        row[0]
        for row in conn.execute(
            "SELECT id FROM procrastinate_events WHERE job_id = %s ORDER BY id", (job_id,)
        )
    ]
    assert len(events) == len(ages), (events, ages)
    for event_id, ago in zip(events, ages, strict=True):
        conn.execute(
            "UPDATE procrastinate_events SET at = now() - %s WHERE id = %s", (ago, event_id)
        )


def fail_retry_fail(conn: psycopg.Connection) -> int:
    """Through Procrastinate's own functions: deferred, started, failed, (scheduled,) retried,
    started, failed."""
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name) VALUES ('q', 't') RETURNING id"
    ).fetchone()
    assert row is not None
    job_id = row[0]
    for _ in range(2):
        conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (job_id,))
        conn.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (job_id,))
        if _ == 0:
            conn.execute(
                "SELECT procrastinate_retry_job_v2(%s, now(), NULL, NULL, NULL)", (job_id,)
            )
    types = [
        row[0]
        for row in conn.execute(
            "SELECT type::text FROM procrastinate_events WHERE job_id = %s ORDER BY id", (job_id,)
        )
    ]
    assert types == [
        "deferred",
        "started",
        "failed",
        "scheduled",
        "retried",
        "started",
        "failed",
    ]
    return job_id


def test_a_job_failed_retried_and_failed_again_is_aged_from_its_last_failure(
    conn, database, location
):
    day = dt.timedelta(days=1)
    recent = fail_retry_fail(conn)
    age_events(conn, recent, [d * day for d in (60, 59, 58, 20, 20, 2, 1)])
    old = fail_retry_fail(conn)
    age_events(conn, old, [d * day for d in (60, 59, 58, 40, 40, 32, 31)])
    settings = make_settings(database, jobs={"failed": "30d"})
    summary = run_jobs(settings, location)
    assert summary["jobs"]["deleted"] == 1
    assert job_ids(conn) == {recent}
    assert conn.execute(
        "SELECT count(*) FROM procrastinate_events WHERE job_id = %s", (old,)
    ).fetchone() == (0,)


def test_jobs_without_events_are_kept(conn, database, location):
    no_events = seed_job(
        conn, status="succeeded", finished_ago=dt.timedelta(days=90), with_events=False
    )
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status) "
        "VALUES ('q', 't', 'todo') RETURNING id"
    ).fetchone()
    assert row is not None
    aborted_from_todo = row[0]
    conn.execute("SELECT procrastinate_finish_job_v1(%s, 'aborted', false)", (aborted_from_todo,))
    conn.execute(
        "UPDATE procrastinate_events SET at = now() - interval '90 days' WHERE job_id = %s",
        (aborted_from_todo,),
    )
    settings = make_settings(
        database,
        jobs={"succeeded": "1s", "failed": "1s", "cancelled": "1s", "aborted": "1s"},
    )
    assert run_jobs(settings, location)["jobs"]["deleted"] == 0
    assert job_ids(conn) == {no_events, aborted_from_todo}


def test_finished_straight_from_todo_and_cancelled_with_a_later_schedule(conn, database, location):
    def todo_job(scheduled_in: str | None = None) -> int:
        row = conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, scheduled_at) "
            "VALUES ('q', 't', now() + %s::interval) RETURNING id",
            (scheduled_in,),
        ).fetchone()
        assert row is not None
        return row[0]

    succeeded_from_todo = todo_job()
    conn.execute(
        "SELECT procrastinate_finish_job_v1(%s, 'succeeded', false)", (succeeded_from_todo,)
    )
    failed_from_todo = todo_job()
    conn.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (failed_from_todo,))
    for job_id in (succeeded_from_todo, failed_from_todo):
        age_events(conn, job_id, [dt.timedelta(days=11), dt.timedelta(days=10)])
    # Due in 30 days, cancelled 8 days ago: its `scheduled` event is dated in the future.
    cancelled_scheduled = todo_job("30 days")
    conn.execute("SELECT procrastinate_cancel_job_v1(%s, false, false)", (cancelled_scheduled,))
    for kind, ago in (("deferred", "9 days"), ("scheduled", "-30 days"), ("cancelled", "8 days")):
        conn.execute(
            "UPDATE procrastinate_events SET at = now() - %s::interval "
            "WHERE job_id = %s AND type::text = %s",
            (ago, cancelled_scheduled, kind),
        )
    summary = run_jobs(make_settings(database), location)
    assert job_ids(conn) == {failed_from_todo}
    assert summary["jobs"]["by"]["status"] == {"cancelled": 1, "succeeded": 1}


def test_dry_run_agrees_with_the_real_run(conn, database, location):
    specs = [
        {
            "status": FINAL[i % 4],
            "queue": QUEUES[i % 3],
            "task": TASKS[i % 4],
            "finished_ago": FINISH_AGES[i % len(FINISH_AGES)],
        }
        for i in range(300)
    ] + [{"status": "todo", "queue": "emails", "task": "app.report"}] * 5
    ids = seed_bulk(conn, specs)
    settings = make_settings(
        database,
        batch_size=40,
        jobs={
            "succeeded": "1h",
            "failed": "2d",
            "cancelled": "6h",
            "aborted": "1d",
            "rules": [
                {"queue": "emails*", "succeeded": "5d"},
                {"task": "app.send_*", "failed": "forever"},
            ],
        },
    )
    before = job_ids(conn)
    preview = run_jobs(settings, location, dry_run=True)
    assert job_ids(conn) == before
    summary = run_jobs(settings, location)
    deleted = before - job_ids(conn)
    assert deleted == set(ids) - expected_kept(settings.jobs, specs, ids)
    assert summary["jobs"]["deleted"] == len(deleted) > 0
    for key in ("deleted", "events", "by", "oldest", "samples"):
        assert preview["jobs"][key] == summary["jobs"][key], key
    assert set(preview["jobs"]["samples"]) <= deleted
    assert len(preview["jobs"]["samples"]) == 5
    assert preview["dry_run"] is True
    assert summary["dry_run"] is False
    oldest = dt.datetime.fromisoformat(preview["jobs"]["oldest"])
    row = conn.execute("SELECT now() - %s::interval", (FINISH_AGES[-1],)).fetchone()
    assert row is not None
    assert abs((oldest - row[0]).total_seconds()) < 60


def counting_abort(after: int):
    calls = {"n": 0}

    def should_abort() -> bool:
        calls["n"] += 1
        return calls["n"] > after

    return should_abort


def test_abort_mid_run_then_the_next_run_deletes_the_rest(conn, database, location):
    specs = [
        {"status": "succeeded", "queue": "q", "task": "t", "finished_ago": dt.timedelta(days=9)}
    ] * 200
    seed_bulk(conn, specs)
    keep = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(hours=1))
    settings = make_settings(database, batch_size=10)

    first = run_jobs(settings, location, should_abort=counting_abort(3))
    assert first["status"] == "aborted"
    assert first["stopped"] == "aborted"
    assert first["complete"] is False
    assert first["jobs"]["stopped"] == "aborted"
    assert first["jobs"]["resume"]["segment"] == "final events"
    assert len(first["jobs"]["resume"]["after"]) == 2
    assert 0 < first["jobs"]["deleted"] < 200
    assert first["jobs"]["batches"] == 3
    with psycopg.connect(database, autocommit=True) as book:
        row = ledger.get(book, first["run_id"])
    assert row is not None
    assert row["status"] == "aborted"
    assert row["summary"]["jobs"]["deleted"] == first["jobs"]["deleted"]
    assert len(job_ids(conn)) == 201 - first["jobs"]["deleted"]

    second = run_jobs(settings, location)
    assert second["status"] == "succeeded"
    assert second["complete"] is True
    assert first["jobs"]["deleted"] + second["jobs"]["deleted"] == 200
    assert job_ids(conn) == {keep}


def test_time_budget_stops_between_batches_and_runs_resume(conn, database, location):
    specs = [
        {"status": "failed", "queue": "q", "task": "t", "finished_ago": dt.timedelta(days=40)}
    ] * 400
    seed_bulk(conn, specs)
    spent = run_jobs(make_settings(database, max_run_seconds=1e-6), location)
    assert spent["stopped"] == "time budget spent"
    assert spent["complete"] is False
    assert spent["jobs"]["deleted"] == 0
    assert len(job_ids(conn)) == 400

    settings = make_settings(database, batch_size=10, max_run_seconds=0.02)
    total, runs = 0, 0
    while job_ids(conn) and runs < 1000:
        summary = run_jobs(settings, location)
        total += summary["jobs"]["deleted"]
        runs += 1
        if summary.get("stopped"):
            assert summary["complete"] is False
            assert summary["jobs"]["stopped"] == "time budget spent"
            assert summary["jobs"]["resume"]["segment"] == "final events"
    assert job_ids(conn) == set()
    assert total == 400
    statuses = {row[0] for row in conn.execute("SELECT status FROM retention_runs")}
    assert statuses == {"succeeded"}


def test_events_go_and_periodic_defers_are_unlinked(conn, database, location):
    job = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=5))
    fresh = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(hours=5))
    conn.execute(
        "INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id) "
        "VALUES ('app.tick', 1, %s), ('app.tick', 2, %s)",
        (job, fresh),
    )
    summary = run_jobs(make_settings(database), location)
    assert summary["jobs"]["deleted"] == 1
    assert summary["jobs"]["events"] == 3
    assert job_ids(conn) == {fresh}
    defers = conn.execute(
        "SELECT defer_timestamp, job_id FROM procrastinate_periodic_defers ORDER BY 1"
    ).fetchall()
    assert defers == [(1, None), (2, fresh)]
    assert conn.execute(
        "SELECT count(*) FROM procrastinate_events WHERE job_id = %s", (job,)
    ).fetchone() == (0,)


def test_the_delete_leaves_a_job_that_changed_state_since_it_was_selected(conn):
    """A job selected as failed long ago, then retried and failed again before the delete ran
    (the window between the select's snapshot and its row lock): the delete keeps it."""
    changed = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=40))
    unchanged = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=40))
    conn.execute("SELECT procrastinate_retry_job_v2(%s, NULL, NULL, NULL, NULL)", (changed,))
    conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (changed,))
    conn.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (changed,))
    row = conn.execute("SELECT now() - interval '30 days'").fetchone()
    assert row is not None
    job_deleter = deleter.JobDeleter(unchanged_since=row[0])
    with conn.transaction(), conn.cursor() as cur:
        counts = job_deleter.delete(cur, [changed, unchanged])
    assert counts["deleted"] == 1
    assert job_ids(conn) == {changed}


def _heap_fetches_of_the_succeeded_range(conn: psycopg.Connection) -> int:
    plan = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT min(at) FROM procrastinate_events "
            "WHERE type = 'succeeded' AND at < now() - interval '30 days'"
        )
    )
    assert "retention_events_final_at_idx" in plan, plan
    fetches = re.search(r"Heap Fetches: (\d+)", plan)
    assert fetches is not None, plan
    return int(fetches.group(1))


def test_a_real_run_leaves_no_index_entry_of_its_deleted_events_to_visit(conn, database, location):
    """After a real run, the final-events index entries of the events it deleted are marked dead:
    the next run's scan of that range skips them instead of visiting each dead row's heap page
    (the cost of a run with nothing left to delete right after a mass delete). PostgreSQL marks an
    entry dead only when no transaction anywhere that it must consider could still see the row: a
    transaction another test keeps open (in any database of the server) prevents it. Each attempt
    waits for a moment with no such transaction older than 0.2 s, then runs on new jobs; up to
    five attempts. Without the settle pass every attempt sees all 300 entries."""
    old = {"status": "succeeded", "queue": "q", "task": "t", "finished_ago": dt.timedelta(days=40)}
    seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=1))
    settings = make_settings(database, jobs={"succeeded": "30d"})
    fetches, held = [], []
    for _ in range(5):
        held = _wait_for_no_open_transaction(conn, timeout=15)
        seed_bulk(conn, [old] * 300)
        assert run_jobs(settings, location)["jobs"]["deleted"] == 300
        fetches.append(_heap_fetches_of_the_succeeded_range(conn))
        if fetches[-1] == 0:
            break
    assert fetches[-1] == 0, (fetches, held)


def _wait_for_no_open_transaction(conn: psycopg.Connection, timeout: float) -> list[Any]:
    """Wait until no other session of the server has had a transaction open for over 0.2 s (with
    an xid or a snapshot); return the last such sessions seen (empty once there are none)."""
    deadline = time.monotonic() + timeout
    while True:
        open_ = conn.execute(
            "SELECT datname, state, xact_start, left(query, 60) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() "
            "AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) "
            "AND xact_start < clock_timestamp() - interval '0.2 s'"
        ).fetchall()
        if not open_ or time.monotonic() > deadline:
            return open_
        time.sleep(0.1)


def test_jobs_rewritten_since_they_finished_are_judged_like_the_others(conn, database, location):
    """A batch deletes a job whose row version was written with its final event through its
    primary key, and probes the events of a job rewritten since (its worker's row deleted, say):
    both kinds go by the same rules, and their events are counted."""
    day = dt.timedelta(days=1)
    jobs_by_kind = {
        (rewritten, ago): seed_job(
            conn, status="failed", finished_ago=ago * day, rewritten=rewritten, queue="q"
        )
        for rewritten in (False, True)
        for ago in (40, 2)
    }
    for (rewritten, _), job_id in jobs_by_kind.items():
        assert shares_final_transaction(conn, job_id) is not rewritten
    # A job that failed long ago, was retried and failed again recently, then rewritten: its old
    # failure is not its latest state change.
    again = seed_job(conn, status="failed", finished_ago=40 * day)
    conn.execute("SELECT procrastinate_retry_job_v2(%s, NULL, NULL, NULL, NULL)", (again,))
    conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (again,))
    conn.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (again,))
    conn.execute("UPDATE procrastinate_jobs SET priority = 1 WHERE id = %s", (again,))
    settings = make_settings(database, jobs={"failed": "30d"})

    preview = run_jobs(settings, location, dry_run=True)
    summary = run_jobs(settings, location)

    assert job_ids(conn) == {jobs_by_kind[(False, 2)], jobs_by_kind[(True, 2)], again}
    assert summary["jobs"]["deleted"] == preview["jobs"]["deleted"] == 2
    assert summary["jobs"]["events"] == preview["jobs"]["events"] == 6


def test_events_go_uncounted_when_the_server_does_not_count_rows(conn, database):
    """With `track_counts` off the transaction's row counters stay at zero: the run deletes the
    same jobs and events, and reports no events count rather than a wrong one."""
    old = [seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=40)) for _ in range(3)]
    young = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=1))
    policy = jobs_policy(database, succeeded="30d")
    limits = prune_limits(batch_size=2, max_batch_seconds=5.0, lock_timeout=1)
    with psycopg.connect(database, autocommit=True) as pruning:
        pruning.execute("SET track_counts = off")
        now = pruning.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        result = batches.run(
            pruning, prune.prune_target(pruning, policy, now), limits, dry_run=False
        )
    assert result.deleted == 3
    assert "events" not in result.counts
    assert job_ids(conn) == {young}
    left = conn.execute(
        "SELECT count(*) FROM procrastinate_events WHERE job_id = ANY(%s)", (old,)
    ).fetchone()
    assert left == (0,)
