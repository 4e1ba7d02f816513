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
        if finite:
            found.append(
                Walk(
                    event_type=event_type,
                    statuses=tuple(finite),
                    cutoff=now - min(finite.values()),
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
