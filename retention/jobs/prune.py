"""Job policies -> what the engine deletes: old finished Procrastinate jobs with their events.

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
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from retention import errors
from retention.config import durations, globs
from retention.config import settings as settings_mod
from retention.engine import batches
from retention.pg import queries

FINAL = settings_mod.FINAL_STATUSES
UNFINISHED = settings_mod.UNFINISHED_STATUSES
KNOWN_STATUSES = (*UNFINISHED, *FINAL)
_EPOCH = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
GROUPS = ("status", "queue", "task")
# A prune batch's transaction: its jobs are found by primary-key probes, never by a hash or merge
# join over a scan of the whole table (which the planner can estimate cheaper on a big table), and
# its commit does not wait for the WAL flush: a batch lost in a server crash leaves its jobs for
# the next run, and the walk's last batch (see batches._Walk._fused_batch), which waits, flushes
# every batch before it.
BATCH_SETTINGS = (
    ("enable_hashjoin", "off"),
    ("enable_mergejoin", "off"),
    ("synchronous_commit", "off"),
)
# The final event each final status is reached by: Procrastinate records `cancelled` when a job
# goes straight from todo to succeeded or failed.
STATUSES_BY_EVENT: dict[str, tuple[str, ...]] = {
    "succeeded": ("succeeded",),
    "failed": ("failed",),
    "cancelled": ("cancelled", "succeeded", "failed"),
    "aborted": ("aborted",),
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobDeleter:
    """Deletes jobs with their events. With `unchanged_since`, a job that changed state at or
    after it (retried and finished again while the batch was being selected) is left alone."""

    unchanged_since: dt.datetime | None = None

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        row = cur.execute(
            queries.text("delete_jobs"), {"ids": ids, "since": self.unchanged_since}
        ).fetchone()
        assert row is not None
        return {"deleted": row[0], "events": row[1]}

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        row = cur.execute(queries.text("count_job_events"), {"ids": ids}).fetchone()
        assert row is not None
        return {"events": row[0]}


def _interval(age: dt.timedelta | None) -> sql.Composable:
    return sql.SQL("NULL::interval") if age is None else sql.Literal(age)


def age_expression(policy: settings_mod.JobsPolicy, status: str) -> sql.Composable:
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


def shortest_age(policy: settings_mod.JobsPolicy, status: str) -> dt.timedelta | None:
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


def walks(policy: settings_mod.JobsPolicy, now: dt.datetime) -> list[Walk]:
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


def prune_target(
    conn: psycopg.Connection, policy: settings_mod.JobsPolicy, now: dt.datetime
) -> batches.Target:
    """One segment: the walk over the final events of every type that has any older than its
    cutoff, merged in time order. The events deleted with the jobs (by the cascade) are counted
    by PostgreSQL's per-transaction statistics; with `track_counts` off (it is on by default)
    they are not counted."""
    live: list[Walk] = []
    oldest: list[dt.datetime] = []
    for walk in walks(policy, now):
        row = conn.execute(_oldest_query(walk), {_cutoff_name(walk): walk.cutoff}).fetchone()
        if row and row[0] is not None:
            live.append(walk)
            oldest.append(row[0])
    if not live:
        return batches.Target(name="jobs", segments=[], deleter=JobDeleter())
    select, fused = _prune_queries(policy, live)
    settle = sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(sql.SQL("({})").format(_oldest_query(walk)) for walk in live)
    )
    segment = batches.Segment(
        name="final events",
        select=select,
        fused=fused,
        counter=(("events",), queries.get("deleted_job_events")) if _counts_tuples(conn) else None,
        settle=lambda: settle,
        settings=BATCH_SETTINGS,
        params=_prune_params(live, now),
        start=(_EPOCH, 0),
        key_width=2,
        groups=GROUPS,
        progress=_time_progress(min(oldest), max(walk.cutoff for walk in live)),
    )
    return batches.Target(name="jobs", segments=[segment], deleter=JobDeleter())


def _cutoff_name(walk: Walk) -> str:
    return f"cutoff_{walk.event_type}"


def _oldest_query(walk: Walk) -> sql.Composable:
    return queries.get("oldest_final_event").format(
        event_type=sql.Literal(walk.event_type), cutoff=sql.Placeholder(_cutoff_name(walk))
    )


def _counts_tuples(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT current_setting('track_counts')::bool").fetchone()
    return bool(row and row[0])


def eligible(
    conn: psycopg.Connection, policy: settings_mod.JobsPolicy, now: dt.datetime
) -> dict[str, tuple[int, dt.datetime | None]]:
    """Per final status: how many jobs a run would delete now, and the oldest finish among them.
    The prune walk's conditions, counted in one statement per walk."""
    found: dict[str, tuple[int, dt.datetime | None]] = {}
    for walk in walks(policy, now):
        query = queries.get("eligible_jobs").format(
            event_type=sql.Literal(walk.event_type),
            statuses=sql.SQL(", ").join(sql.Literal(status) for status in walk.statuses),
            age=_status_age(policy, walk.statuses),
        )
        for status, count, oldest in conn.execute(query, {"cutoff": walk.cutoff, "now": now}):
            before, first = found.get(status, (0, None))
            found[status] = (before + count, min(o for o in (first, oldest) if o is not None))
    return found


def _status_age(policy: settings_mod.JobsPolicy, statuses: tuple[str, ...]) -> sql.Composable:
    if len(statuses) == 1:
        return age_expression(policy, statuses[0])
    whens = [
        sql.SQL("WHEN {} THEN {}").format(sql.Literal(status), age_expression(policy, status))
        for status in statuses
    ]
    return sql.SQL("(CASE j.status {} END)").format(sql.SQL(" ").join(whens))


def _prune_queries(
    policy: settings_mod.JobsPolicy, live: list[Walk]
) -> tuple[Callable[[bool], sql.Composable], Callable[[bool], sql.Composable]]:
    """The dry run's select and the real run's fused statement, composed from the same scan and
    the same conditions, so that both select the same jobs. The select locks nothing; the fused
    statement deletes, skipping locked rows when asked (see batches.Segment.fused)."""
    pairs = [(walk.event_type, status) for walk in live for status in walk.statuses]
    statuses = tuple(dict.fromkeys(status for _, status in pairs))
    conditions = {
        "leads_to": sql.SQL("(s.type, j.status) IN ({})").format(
            sql.SQL(", ").join(
                sql.SQL("({}::procrastinate_job_event_type, {}::procrastinate_job_status)").format(
                    sql.Literal(kind), sql.Literal(status)
                )
                for kind, status in pairs
            )
        ),
        "age": _status_age(policy, statuses),
        "no_later_change": queries.get("prune_jobs_no_later_change"),
    }
    branches = sql.SQL(" UNION ALL ").join(
        queries.get("prune_jobs_scan_type").format(
            event_type=sql.Literal(walk.event_type), cutoff=sql.Placeholder(_cutoff_name(walk))
        )
        for walk in live
    )
    scan = queries.get("prune_jobs_scan").format(branches=branches)

    eligible = queries.get("prune_jobs_eligible").format(**conditions)

    def select(lock: bool = False) -> sql.Composable:
        return queries.get("prune_jobs_select").format(scan=scan, eligible=eligible)

    def fused(skip_locked: bool = False) -> sql.Composable:
        if skip_locked:
            delete = queries.get("prune_jobs_delete_skip_locked").format(eligible=eligible)
        else:
            delete = queries.get("prune_jobs_delete").format(**conditions)
        return queries.get("prune_jobs_fused").format(scan=scan, delete=delete)

    return select, fused


def _prune_params(live: list[Walk], now: dt.datetime):
    cutoffs = {_cutoff_name(walk): walk.cutoff for walk in live}

    def params(after: tuple[Any, ...], limit: int) -> dict[str, Any]:
        return {
            **cutoffs,
            "now": now,
            "after_at": after[0],
            "after_id": after[1],
            "limit": limit,
            "samples": batches.SAMPLE_SIZE,
        }

    return params


def _time_progress(oldest: dt.datetime, cutoff: dt.datetime):
    span = max((cutoff - oldest).total_seconds(), 1e-6)

    def progress(key: tuple[Any, ...]) -> float:
        return (key[0] - oldest).total_seconds() / span

    return progress


@dataclasses.dataclass(frozen=True, kw_only=True)
class PurgeFilters:
    """An operator's choice of jobs to delete now. The filters intersect."""

    job_ids: tuple[int, ...] = ()
    queue: str | None = None
    task: str | None = None
    statuses: tuple[str, ...] = ()
    finished_before: dt.datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        job_ids: list[int] | None,
        queue: str | None,
        task: str | None,
        statuses: list[str] | None,
        finished_before: str | None,
        finished_before_name: str = "finished_before",
    ) -> PurgeFilters:
        """Filters as a person gives them: `finished_before` a timestamp or a duration ago."""
        when = None
        if finished_before:
            try:
                when = durations.parse_when(finished_before, dt.datetime.now(dt.UTC))
            except ValueError as exc:
                raise errors.ConfigError(f"{finished_before_name}: {exc}") from None
        return cls(
            job_ids=tuple(job_ids or ()),
            queue=queue,
            task=task,
            statuses=tuple(statuses or ()),
            finished_before=when,
        )

    @property
    def empty(self) -> bool:
        return not (
            self.job_ids or self.queue or self.task or self.statuses or self.finished_before
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_ids": list(self.job_ids),
            "queue": self.queue,
            "task": self.task,
            "statuses": list(self.statuses),
            "finished_before": self.finished_before.isoformat() if self.finished_before else None,
        }


def check_purge(conn: psycopg.Connection, filters: PurgeFilters) -> None:
    """Refuse, before anything is deleted, a purge that names unfinished or unknown things."""
    if filters.empty:
        raise errors.ConfigError(
            "purge needs at least one filter: --job-id, --queue, --task, --status or "
            "--finished-before"
        )
    for status in filters.statuses:
        if status in UNFINISHED:
            raise errors.ConfigError(
                f"--status {status}: {status} jobs are not finished and are never deleted; "
                "cancel them first (procrastinate cancel / app.job_manager.cancel_job_by_id)"
            )
        if status not in FINAL:
            raise errors.ConfigError(
                f"--status {status}: unknown status; use one of {', '.join(FINAL)}"
            )
    for name, glob in (("queue", filters.queue), ("task", filters.task)):
        if glob is None:
            continue
        try:
            pattern = globs.to_regex(glob)
        except ValueError as exc:
            raise errors.ConfigError(f"--{name} {glob!r}: {exc}") from None
        row = conn.execute(queries.text(f"any_{name}_matches"), {"pattern": pattern}).fetchone()
        if not (row and row[0]):
            raise errors.ConfigError(f"--{name} {glob!r} matches no existing {name} of any job")
    if filters.job_ids:
        ids = list(filters.job_ids)
        unfinished = conn.execute(queries.text("unfinished_jobs_among"), {"ids": ids}).fetchall()
        if unfinished:
            listed = ", ".join(f"#{job_id} ({status})" for job_id, status in unfinished)
            raise errors.ConfigError(
                f"refusing to delete unfinished jobs: {listed}; cancel them first, then purge"
            )
        found = {row[0] for row in conn.execute(queries.text("existing_job_ids"), {"ids": ids})}
        missing = sorted(set(ids) - found)
        if missing:
            raise errors.ConfigError(f"no job with id {', '.join(map(str, missing))}")


def purge_target(filters: PurgeFilters) -> batches.Target:
    params = {
        "statuses": list(filters.statuses or FINAL),
        "ids": list(filters.job_ids) or None,
        "queue_re": globs.to_regex(filters.queue) if filters.queue else None,
        "task_re": globs.to_regex(filters.task) if filters.task else None,
        "before": filters.finished_before,
    }

    def select(lock: bool) -> sql.Composable:
        return queries.get("purge_jobs_select").format(
            lock=sql.SQL("FOR UPDATE OF j SKIP LOCKED" if lock else "")
        )

    def batch_params(after: tuple[Any, ...], limit: int) -> dict[str, Any]:
        return {**params, "after_id": after[0], "limit": limit}

    segment = batches.Segment(
        name="purge",
        select=select,
        params=batch_params,
        start=(0,),
        key_width=1,
        groups=GROUPS,
        oldest_column=5,
    )
    return batches.Target(
        name="jobs",
        segments=[segment],
        deleter=JobDeleter(unchanged_since=filters.finished_before),
    )
