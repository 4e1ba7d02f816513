"""The count of held jobs a run reports (`prune.held`, one statement over the jobs the holds
name) agrees with the walk: it is what a dry run would delete without the holds and does not
with them, and what the per-type statement of the walk's conditions counts with the hold
condition, on generated jobs, policies and holds."""

from __future__ import annotations

import psycopg
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from psycopg import sql

from retention import holds
from retention.jobs import policy, prune
from retention.pg import queries
from tests.helpers import make_settings, run_jobs, seed_bulk
from tests.integration.test_jobs import job_specs, policies, reset

hold_shapes = st.fixed_dictionaries(
    {
        "every": st.sampled_from((2, 3, 5)),
        "queue": st.sampled_from((None, "emails*", "rep?rts")),
        "task": st.sampled_from((None, "app.send_*", "*report")),
    }
)


def _per_walk(conn: psycopg.Connection, jobs_policy, now) -> int:
    """The walk's conditions, one statement per event type, with the hold condition."""
    total = 0
    for walk in policy.walks(jobs_policy, now):
        query = queries.get("eligible_jobs").format(
            event_type=sql.Literal(walk.event_type),
            statuses=sql.SQL(", ").join(sql.Literal(status) for status in walk.statuses),
            age=policy.status_age(jobs_policy, walk.statuses),
            hold=holds.conditions.job_held("j"),
        )
        total += sum(
            count for _, count, _ in conn.execute(query, {"cutoff": walk.cutoff, "now": now})
        )
    return total


@hypothesis_settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=job_specs, jobs_config=policies, shape=hold_shapes)
def test_the_held_count_agrees_with_the_walk(conn, database, location, specs, jobs_config, shape):
    reset(conn)
    conn.execute("TRUNCATE retention_holds")
    ids = seed_bulk(conn, specs)
    settings = make_settings(database, jobs=jobs_config)
    free = run_jobs(settings, location, dry_run=True)["jobs"]["deleted"]
    holds.add(conn, settings, job_ids=ids[:: shape["every"]], reason="case 1", by="test")
    if shape["queue"]:
        holds.add(conn, settings, queue=shape["queue"], reason="case 2", by="test")
    if shape["task"]:
        holds.add(conn, settings, task=shape["task"], reason="case 3", by="test")
    preview = run_jobs(settings, location, dry_run=True)["jobs"]
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    counted = prune.held(conn, settings.jobs, now)
    assert counted == _per_walk(conn, settings.jobs, now)
    assert counted == free - preview["deleted"]
    assert preview["held"] == counted
