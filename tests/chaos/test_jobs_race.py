"""The prune's one-statement batch against a job that changes between the statement's snapshot and
its row lock: a job retried and failed again in that window must stay (its old failure, the one
the walk found, is no longer its latest state change).

The window is opened deterministically: the pruning session runs as a role subject to a row
security policy on `procrastinate_events` whose check waits for an advisory lock the test holds,
so the batch statement, its snapshot taken, stops at the first event it reads; the job is retried
and finished again meanwhile; then the lock is released."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from retention.engine import batches
from retention.jobs import paths, prune
from tests.helpers import (
    job_ids,
    jobs_policy,
    orphan_events,
    prune_limits,
    seed_job,
    shares_final_transaction,
)

GATE = 4242


@pytest.fixture
def gated_role(conn: psycopg.Connection):
    role = f"retention_gated_{uuid.uuid4().hex[:12]}"
    conn.execute(
        "CREATE FUNCTION retention_test_gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS "
        f"$$ BEGIN PERFORM pg_advisory_xact_lock_shared({GATE}); RETURN true; END $$"
    )
    conn.execute("ALTER TABLE procrastinate_events ENABLE ROW LEVEL SECURITY")
    conn.execute(
        "CREATE POLICY retention_test_gate ON procrastinate_events USING (retention_test_gate())"
    )
    conn.execute(f'CREATE ROLE "{role}" NOLOGIN')
    conn.execute(f'GRANT USAGE ON SCHEMA public TO "{role}"')
    conn.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"')
    conn.execute(f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    # The set-based path's one extra grant (the README's), unused on the normal path.
    conn.execute(f'GRANT SET ON PARAMETER session_replication_role TO "{role}"')
    try:
        yield role
    finally:
        conn.execute(f'REVOKE SET ON PARAMETER session_replication_role FROM "{role}"')
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


def _retry_and_fail_again(conn: psycopg.Connection, job_id: int) -> None:
    conn.execute("SELECT procrastinate_retry_job_v2(%s, NULL, NULL, NULL, NULL)", (job_id,))
    conn.execute("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = %s", (job_id,))
    conn.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", (job_id,))


def _wait_for_gate(conn: psycopg.Connection, pid: int) -> None:
    for _ in range(200):
        row = conn.execute(
            "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()
        if row and row[0] == "advisory":
            return
        time.sleep(0.05)
    raise AssertionError("the prune's batch never reached the gate")


@pytest.mark.parametrize("jobs_path", ["normal", "auto"], ids=["normal", "set-based"])
@pytest.mark.parametrize(
    ("skip_locked", "rewritten"),
    [(False, False), (False, True), (True, False)],
    ids=["by-primary-key", "by-probe", "skip-locked"],
)
def test_a_job_finished_again_after_the_batch_snapshot_is_kept(
    conn, database, gated_role, skip_locked, rewritten, jobs_path
):
    """by-primary-key: the jobs' row versions were written with their final events, the batch
    deletes them without probing their events; by-probe: they were rewritten since, the batch
    probes them and deletes by ctid; skip-locked: the statement a batch uses once it met a lock.
    Each on both jobs paths (the set-based one with triggers off for the batch)."""
    changed = seed_job(
        conn, status="failed", finished_ago=dt.timedelta(days=40), rewritten=rewritten
    )
    unchanged = seed_job(
        conn, status="failed", finished_ago=dt.timedelta(days=40), rewritten=rewritten
    )
    kept = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=2))
    assert shares_final_transaction(conn, changed) is not rewritten
    assert shares_final_transaction(conn, unchanged) is not rewritten
    policy = jobs_policy(database, failed="30d")
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    path = paths.choose(conn, jobs_path)
    assert path.set_based is (jobs_path == "auto"), path.reason
    target = prune.prune_target(conn, policy, now, path=path)
    assert [segment.name for segment in target.segments] == ["final events"]
    fused = target.segments[0].fused
    assert fused is not None
    target = dataclasses.replace(
        target,
        segments=[
            dataclasses.replace(
                target.segments[0],
                fused=batches.Fused(
                    waiting=fused.skip_locked if skip_locked else fused.waiting,
                    skip_locked=fused.skip_locked,
                    before_commit=fused.before_commit,
                ),
            )
        ],
    )
    limits = prune_limits(batch_size=100, max_batch_seconds=10.0, lock_timeout=5)
    outcome: dict[str, Any] = {}

    def pruner() -> None:
        try:
            with psycopg.connect(database, autocommit=True) as pruning:
                pruning.execute(f'SET ROLE "{gated_role}"')
                outcome["pid"] = pruning.info.backend_pid
                outcome["result"] = batches.run(pruning, target, limits, dry_run=False)
        except BaseException as exc:
            outcome["error"] = exc

    conn.execute("SELECT pg_advisory_lock(%s)", (GATE,))
    thread = threading.Thread(target=pruner)
    try:
        thread.start()
        for _ in range(100):
            if "pid" in outcome or "error" in outcome:
                break
            time.sleep(0.02)
        assert "error" not in outcome, outcome.get("error")
        _wait_for_gate(conn, outcome["pid"])
        _retry_and_fail_again(conn, changed)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (GATE,))
        thread.join(30)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.deleted == 1
    assert result.samples == [unchanged]
    assert result.counts["events"] == 3
    assert job_ids(conn) == {changed, kept}
    assert orphan_events(conn) == 0
