"""Job policies in SQL: the age the rules give a job of each final status, and the walks over
final events that find the jobs old enough.

A job is eligible when its status is final and the time it reached that status (its latest
state-change event) is older than the age its status gets under the rules. `scheduled` and
`abort_requested` events are not state changes and are not looked at: a scheduled event is dated
when the job was due, which can be after the job was cancelled. A job failed, retried and failed
again is aged from its last failure.

A job in a final status with no event recording it (inserted by hand, its events deleted, or
moved from todo to aborted, which Procrastinate does not record) has no known finish time:
age-based pruning never takes it; `retention purge` without `--finished-before` can.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from psycopg import sql

from retention.config import globs, policies
from retention.pg import queries

FINAL = policies.FINAL_STATUSES
UNFINISHED = policies.UNFINISHED_STATUSES
# How the engine groups what it deletes (the columns of the jobs' rows, by these names).
GROUPS = ("status", "queue", "task")
# The final event each final status is reached by: Procrastinate records `cancelled` when a job
# goes straight from todo to succeeded or failed.
STATUSES_BY_EVENT: dict[str, tuple[str, ...]] = {
    "succeeded": ("succeeded",),
    "failed": ("failed",),
    "cancelled": ("cancelled", "succeeded", "failed"),
    "aborted": ("aborted",),
}


def _interval(age: dt.timedelta | None) -> sql.Composable:
    return sql.SQL("NULL::interval") if age is None else sql.Literal(age)


def age_expression(policy: policies.JobsPolicy, status: str) -> sql.Composable:
    """The SQL twin of JobsPolicy.age_for: the last matching rule that sets the status wins."""
    whens: list[sql.Composable] = []
    for rule in reversed(policy.rules):
        sets, age = rule.age(status)
        if not sets:
            continue
        conditions: list[sql.Composable] = []
        if rule.queue is not None:
            conditions.append(
                sql.SQL("j.queue_name ~ {}").format(sql.Literal(globs.to_regex(rule.queue)))
            )
        if rule.task is not None:
            conditions.append(
                sql.SQL("j.task_name ~ {}").format(sql.Literal(globs.to_regex(rule.task)))
            )
        whens.append(
            sql.SQL("WHEN {} THEN {}").format(sql.SQL(" AND ").join(conditions), _interval(age))
        )
    default = _interval(getattr(policy, status))
    if not whens:
        return default
    return sql.SQL("(CASE {} ELSE {} END)").format(sql.SQL(" ").join(whens), default)


def _matches(rule: policies.JobRule, alias: str) -> sql.Composable:
    """Whether the job `alias` matches the rule's globs."""
    a = sql.Identifier(alias)
    conditions: list[sql.Composable] = []
    if rule.queue is not None:
        conditions.append(
            sql.SQL("{}.queue_name ~ {}").format(a, sql.Literal(globs.to_regex(rule.queue)))
        )
    if rule.task is not None:
        conditions.append(
            sql.SQL("{}.task_name ~ {}").format(a, sql.Literal(globs.to_regex(rule.task)))
        )
    return sql.SQL("({})").format(sql.SQL(" AND ").join(conditions))


def rule_statuses(rule: policies.JobRule) -> tuple[str, ...]:
    return tuple(status for status in FINAL if rule.age(status)[0])


def governed(policy: policies.JobsPolicy, index: int, alias: str) -> sql.Composable:
    """Whether rule `index` decides the age of the job `alias`: its status is one the rule sets,
    it matches the rule, and no later rule setting that status matches it (the SQL twin of
    JobsPolicy.rule_for)."""
    a = sql.Identifier(alias)
    rule = policy.rules[index]
    options: list[sql.Composable] = []
    for status in rule_statuses(rule):
        parts = [
            sql.SQL("{}.status = {}::procrastinate_job_status").format(a, sql.Literal(status)),
            _matches(rule, alias),
        ]
        parts += [
            sql.SQL("NOT {}").format(_matches(later, alias))
            for later in policy.rules[index + 1 :]
            if later.age(status)[0]
        ]
        options.append(sql.SQL("({})").format(sql.SQL(" AND ").join(parts)))
    return sql.SQL("({})").format(sql.SQL(" OR ").join(options))


def counted_rules(policy: policies.JobsPolicy) -> list[int]:
    """The indexes of the rules with `keep_last` or `max_count`."""
    return [index for index, rule in enumerate(policy.rules) if rule.counted is not None]


def _group(rule: policies.JobRule, left: sql.Composable, alias: str) -> sql.Composable:
    """`left`'s queue and task equal to the job `alias`'s, as far as the rule's `per` goes."""
    a = sql.Identifier(alias)
    parts: list[sql.Composable] = [
        sql.SQL("{}.{} = {}.{}").format(left, sql.Identifier(mine), a, sql.Identifier(column))
        for mine, column in (("queue", "queue_name"), ("task", "task_name"))
        if mine in rule.per
    ]
    return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")


def count_bounds(policy: policies.JobsPolicy) -> sql.Composable:
    """The CTE `bounds` (prune_jobs_count_bounds), to follow `scanned`; empty without a count
    rule."""
    indexes = counted_rules(policy)
    if not indexes:
        return sql.SQL("")
    branches: list[sql.Composable] = []
    for index in indexes:
        rule = policy.rules[index]
        statuses = set(rule_statuses(rule))
        types = [t for t, leads in STATUSES_BY_EVENT.items() if statuses & set(leads)]
        counted = rule.counted
        assert counted is not None
        same = [
            sql.SQL("n.{} = g.{}").format(sql.Identifier(column), sql.Identifier(mine))
            for mine, column in (("queue", "queue_name"), ("task", "task_name"))
            if mine in rule.per
        ]
        branches.append(
            queries.get("prune_jobs_count_group").format(
                rule=sql.Literal(index),
                queue=sql.SQL("j.queue_name" if "queue" in rule.per else "NULL"),
                task=sql.SQL("j.task_name" if "task" in rule.per else "NULL"),
                governed_j=governed(policy, index, "j"),
                governed_n=governed(policy, index, "n"),
                same_group=sql.SQL(" AND ").join(same) if same else sql.SQL("true"),
                types=sql.SQL(" UNION ALL ").join(
                    queries.get("prune_jobs_count_type").format(event_type=sql.Literal(t))
                    for t in types
                ),
                offset=sql.Literal(counted[1] - 1),
            )
        )
    return queries.get("prune_jobs_count_bounds").format(
        branches=sql.SQL(" UNION ALL ").join(branches)
    )


def _older(age: dt.timedelta | None) -> sql.Composable:
    return sql.SQL("s.at < %(now)s - {}").format(_interval(age))


def _rule_condition(policy: policies.JobsPolicy, index: int, status: str) -> sql.Composable:
    rule = policy.rules[index]
    older = _older(rule.age(status)[1])
    if rule.counted is None:
        return older
    bound = queries.get("prune_jobs_count_bound").format(
        rule=sql.Literal(index), same_group=_group(rule, sql.Identifier("b"), "j")
    )
    beyond = sql.SQL("(s.at, s.event_id) < {}").format(bound)
    if rule.counted[0] == "keep_last":
        return sql.SQL("({} AND {})").format(older, beyond)
    return sql.SQL("({} OR {})").format(older, beyond)


def old_enough(policy: policies.JobsPolicy, statuses: tuple[str, ...]) -> sql.Composable:
    """Whether the job `j`, finished by the event `s`, may go by its age and the count rule of
    the rule deciding its age (keep_last: older than the age and beyond the newest N of its
    group; max_count: older than the age or beyond the newest N), read from `bounds`."""
    if not counted_rules(policy):
        return sql.SQL("s.at < %(now)s - {}").format(status_age(policy, statuses))
    whens: list[sql.Composable] = []
    for status in statuses:
        inner: list[sql.Composable] = []
        for index in reversed(range(len(policy.rules))):
            rule = policy.rules[index]
            if rule.age(status)[0]:
                inner.append(
                    sql.SQL("WHEN {} THEN {}").format(
                        _matches(rule, "j"), _rule_condition(policy, index, status)
                    )
                )
        default = _older(getattr(policy, status))
        expression = (
            sql.SQL("(CASE {} ELSE {} END)").format(sql.SQL(" ").join(inner), default)
            if inner
            else default
        )
        whens.append(sql.SQL("WHEN {} THEN {}").format(sql.Literal(status), expression))
    return sql.SQL("(CASE j.status::text {} END)").format(sql.SQL(" ").join(whens))


def trims(policy: policies.JobsPolicy, status: str) -> bool:
    """Whether some `max_count` rule sets `status`: such jobs may go however young."""
    return any(
        rule.counted is not None and rule.counted[0] == "max_count" and rule.age(status)[0]
        for rule in policy.rules
    )


def shortest_age(policy: policies.JobsPolicy, status: str) -> dt.timedelta | None:
    ages = [getattr(policy, status)]
    ages += [age for sets, age in (rule.age(status) for rule in policy.rules) if sets]
    finite = [age for age in ages if age is not None]
    return min(finite) if finite else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Walk:
    """The final events of one type older than `cutoff`, and the statuses their jobs may have."""

    event_type: str
    statuses: tuple[str, ...]
    cutoff: dt.datetime


def walks(policy: policies.JobsPolicy, now: dt.datetime) -> list[Walk]:
    """One walk per final event type that leads to a status some age applies to."""
    found = []
    for event_type, statuses in STATUSES_BY_EVENT.items():
        ages = {status: shortest_age(policy, status) for status in statuses}
        finite = {status: age for status, age in ages.items() if age is not None}
        # A status some max_count rule sets: its jobs may go however young, the walk goes to now.
        trimmed = [status for status in statuses if trims(policy, status)]
        if finite or trimmed:
            found.append(
                Walk(
                    event_type=event_type,
                    statuses=tuple(s for s in statuses if s in finite or s in trimmed),
                    cutoff=now if trimmed else now - min(finite.values()),
                )
            )
    return found


def status_age(policy: policies.JobsPolicy, statuses: tuple[str, ...]) -> sql.Composable:
    if len(statuses) == 1:
        return age_expression(policy, statuses[0])
    whens = [
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(status), age_expression(policy, status))
        for status in statuses
    ]
    return sql.SQL("(CASE j.status {} END)").format(sql.SQL(" ").join(whens))
