"""`keep_last` and `max_count` on the jobs policy's rules, in-process against a real PostgreSQL:
what goes compared with a plain Python model of the rule on random jobs (statuses, unfinished
jobs, rules overriding rules, groups per queue and/or task), dry runs equal to real runs, the
count read by the deleting statement."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from retention.config import globs, policies
from tests.helpers import job_ids, make_settings, run_jobs, seed_bulk

FINAL = policies.FINAL_STATUSES
ALL_STATUSES = ("todo", "doing", *FINAL)
QUEUES = ("emails", "emails_bulk", "reports")
TASKS = ("app.send_mail", "app.report")
AGES = ("forever", "1h", "1d", "7d")
# Whole hours and 30 minutes, so that no job is near a cutoff; each job is also a few seconds
# apart from the others (its index), so that no two finish at the same time.
FINISH_HOURS = (0, 3, 12, 48, 200)


def reset(conn: psycopg.Connection) -> None:
    conn.execute(
        "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs CASCADE"
    )


def rule_for(policy: policies.JobsPolicy, status: str, queue: str, task: str) -> int | None:
    """The index of the rule deciding the job's age: the last matching one setting its status."""
    found = None
    for index, rule in enumerate(policy.rules):
        matches = globs.matches(rule.queue, queue) and globs.matches(rule.task, task)
        if rule.age(status)[0] and matches:
            found = index
    return found


def model(policy: policies.JobsPolicy, specs: list[dict[str, Any]], ids: list[int]) -> set[int]:
    """The ids the policy leaves, the rule written plainly."""
    finished = [
        (job_id, spec)
        for job_id, spec in zip(ids, specs, strict=True)
        if spec["status"] in FINAL and spec["events"]
    ]
    groups: dict[tuple[Any, ...], list[tuple[int, dict[str, Any]]]] = {}
    for job_id, spec in finished:
        index = rule_for(policy, spec["status"], spec["queue"], spec["task"])
        if index is None or policy.rules[index].counted is None:
            continue
        per = policy.rules[index].per
        group = (
            index,
            spec["queue"] if "queue" in per else None,
            spec["task"] if "task" in per else None,
        )
        groups.setdefault(group, []).append((job_id, spec))
    beyond: set[int] = set()
    for (index, _, _), members in groups.items():
        counted = policy.rules[index].counted
        assert counted is not None
        newest_first = sorted(members, key=lambda m: m[1]["finished_ago"])
        beyond |= {job_id for job_id, _ in newest_first[counted[1] :]}
    gone = set()
    for job_id, spec in finished:
        age = policy.age_for(spec["status"], spec["queue"], spec["task"])
        old = age is not None and spec["finished_ago"] > age
        index = rule_for(policy, spec["status"], spec["queue"], spec["task"])
        counted = None if index is None else policy.rules[index].counted
        if counted is None:
            goes = old
        elif counted[0] == "keep_last":
            goes = old and job_id in beyond
        else:
            goes = old or job_id in beyond
        if goes:
            gone.add(job_id)
    return set(ids) - gone


job_specs = st.lists(
    st.fixed_dictionaries(
        {
            "status": st.sampled_from(ALL_STATUSES),
            "queue": st.sampled_from(QUEUES),
            "task": st.sampled_from(TASKS),
            "hours": st.sampled_from(FINISH_HOURS),
            "events": st.sampled_from((True, True, True, False)),
            "via_todo": st.booleans(),
            "scheduled_after": st.sampled_from((None, None, dt.timedelta(days=2))),
        }
    ),
    min_size=1,
    max_size=40,
).map(
    lambda specs: [
        {
            **s,
            "finished_ago": dt.timedelta(hours=s["hours"], minutes=30, seconds=i),
            "via_todo": s["via_todo"] and s["status"] in ("succeeded", "failed"),
        }
        for i, s in enumerate(specs)
    ]
)
matchers = st.sampled_from(
    (
        {"queue": "emails*"},
        {"queue": "reports"},
        {"task": "app.*"},
        {"queue": "e*", "task": "*mail"},
    )
)
counts = st.one_of(
    st.just({}),
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(("keep_last", "max_count")),
            "n": st.integers(1, 3),
            "per": st.sampled_from(([], ["queue"], ["task"], ["queue", "task"])),
        }
    ).map(lambda c: {c["kind"]: c["n"], **({"per": c["per"]} if c["per"] else {})}),
)
rules = st.lists(
    st.tuples(
        matchers, st.dictionaries(st.sampled_from(FINAL), st.sampled_from(AGES), min_size=1), counts
    ).map(lambda t: {**t[0], **t[1], **t[2]}),
    min_size=1,
    max_size=3,
)
jobs_configs = st.fixed_dictionaries(
    {}, optional={s: st.sampled_from(AGES) for s in FINAL}
).flatmap(lambda top: rules.map(lambda rs: {**top, "rules": rs}))


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=job_specs, jobs_config=jobs_configs)
def test_what_stays_matches_the_reference_model(conn, database, location, specs, jobs_config):
    reset(conn)
    ids = seed_bulk(conn, specs)
    settings = make_settings(database, jobs=jobs_config, batch_size=4)
    kept = model(settings.jobs, specs, ids)

    preview = run_jobs(settings, location, dry_run=True)
    assert job_ids(conn) == set(ids)
    summary = run_jobs(settings, location)

    assert job_ids(conn) == kept
    assert summary["jobs"]["deleted"] == len(ids) - len(kept)
    assert preview["jobs"]["deleted"] == summary["jobs"]["deleted"]
    assert preview["jobs"]["by"] == summary["jobs"]["by"]


def _seed(conn: psycopg.Connection, queue: str, hours: list[int]) -> list[int]:
    return seed_bulk(
        conn,
        [
            {
                "status": "succeeded",
                "queue": queue,
                "task": "app.t",
                "finished_ago": dt.timedelta(hours=h, seconds=i),
            }
            for i, h in enumerate(hours)
        ],
    )


def test_keep_last_per_queue_keeps_the_newest_of_each_queue_however_old(conn, database, location):
    reset(conn)
    a = _seed(conn, "a", [100, 101, 102, 103])
    b = _seed(conn, "b", [200])
    jobs = {"rules": [{"queue": "*", "succeeded": "1d", "keep_last": 2, "per": ["queue"]}]}
    summary = run_jobs(make_settings(database, jobs=jobs, batch_size=2), location)
    assert job_ids(conn) == {a[0], a[1], b[0]}
    assert summary["jobs"]["deleted"] == 2


def test_max_count_trims_young_jobs_and_never_unfinished_ones(conn, database, location):
    reset(conn)
    done = _seed(conn, "a", [1, 2, 3, 4, 5])
    todo = seed_bulk(
        conn, [{"status": s, "queue": "a", "task": "app.t"} for s in ("todo", "doing")]
    )
    jobs = {"rules": [{"queue": "a", "succeeded": "forever", "max_count": 2}]}
    run_jobs(make_settings(database, jobs=jobs, batch_size=2), location)
    assert job_ids(conn) == {done[0], done[1], *todo}


def test_the_deleting_statement_counts_the_newest_jobs_itself(conn, database, location):
    """The newest N are read by the run's own statements: jobs finished after a dry run make
    older ones deletable at the next run."""
    reset(conn)
    old = _seed(conn, "a", [100, 101, 102])
    jobs = {"rules": [{"queue": "a", "succeeded": "1d", "keep_last": 3}]}
    settings = make_settings(database, jobs=jobs)
    assert run_jobs(settings, location, dry_run=True)["jobs"]["deleted"] == 0
    _seed(conn, "a", [1, 2])
    summary = run_jobs(settings, location)
    assert summary["jobs"]["deleted"] == 2
    assert job_ids(conn) & set(old) == {old[0]}
