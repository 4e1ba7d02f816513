"""Pruning old finished jobs: one walk over the final events of every aged type, each batch one
statement that selects and deletes (see `retention/pg/sql/jobs.sql`). What makes a job eligible
is in `retention.jobs.policy`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from retention.archive import writer as archive_writer
from retention.config import policies
from retention.engine import batches
from retention.holds import conditions as holds
from retention.jobs import deleter, paths, policy
from retention.pg import queries

_EPOCH = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
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


def prune_target(
    conn: psycopg.Connection,
    jobs_policy: policies.JobsPolicy,
    now: dt.datetime,
    archive: archive_writer.Writer | None = None,
    path: paths.JobsPath | None = None,
) -> batches.Target:
    """One segment: the walk over the final events of every type that has any older than its
    cutoff, merged in time order. The events deleted with the jobs (by the cascade) are counted
    by PostgreSQL's per-transaction statistics; with `track_counts` off (it is on by default)
    they are not counted. With `archive`, each batch's jobs and events are written to it before
    the batch commits (a dry run counts them as `archive_rows`). With a set-based `path`
    (retention.jobs.paths), each batch deletes with triggers and foreign-key actions off and
    does their work in bulk; a dry run selects the same jobs either way."""
    live: list[policy.Walk] = []
    oldest: list[dt.datetime] = []
    for walk in policy.walks(jobs_policy, now):
        row = conn.execute(_oldest_query(walk), {_cutoff_name(walk): walk.cutoff}).fetchone()
        if row and row[0] is not None:
            live.append(walk)
            oldest.append(row[0])
    counter = deleter.JobDeleter(held=lambda c: (held(c, jobs_policy, now), ()), archive=archive)
    if not live:
        return batches.Target(name="jobs", segments=[], deleter=counter)
    set_based = path is not None and path.set_based
    select, fused = _prune_queries(jobs_policy, live, archive, path if set_based else None)
    settle = sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(sql.SQL("({})").format(_oldest_query(walk)) for walk in live)
    )
    segment = batches.Segment(
        name="final events",
        select=select,
        fused=fused,
        counter=(("events",), queries.get("deleted_job_events")) if _counts_tuples(conn) else None,
        settle=settle,
        settings=BATCH_SETTINGS + (paths.SET_BASED_SETTINGS if set_based else ()),
        params=_prune_params(live, now),
        start=(_EPOCH, 0),
        key=("at", "event_id"),
        groups=policy.GROUPS,
        progress=_time_progress(min(oldest), max(walk.cutoff for walk in live)),
    )
    return batches.Target(name="jobs", segments=[segment], deleter=counter)


def _cutoff_name(walk: policy.Walk) -> str:
    return f"cutoff_{walk.event_type}"


def _oldest_query(walk: policy.Walk) -> queries.Statement:
    return queries.get("oldest_final_event").format(
        event_type=sql.Literal(walk.event_type), cutoff=sql.Placeholder(_cutoff_name(walk))
    )


def _counts_tuples(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT current_setting('track_counts')::bool").fetchone()
    return bool(row and row[0])


def eligible(
    conn: psycopg.Connection,
    jobs_policy: policies.JobsPolicy,
    now: dt.datetime,
) -> dict[str, tuple[int, dt.datetime | None]]:
    """Per final status: how many jobs a run would delete now, and the oldest finish among them.
    The prune walk's conditions, counted in one statement per walk."""
    found: dict[str, tuple[int, dt.datetime | None]] = {}
    hold = sql.SQL("NOT {}").format(holds.job_held("j"))
    for walk in policy.walks(jobs_policy, now):
        query = queries.get("eligible_jobs").format(
            event_type=sql.Literal(walk.event_type),
            statuses=sql.SQL(", ").join(sql.Literal(status) for status in walk.statuses),
            age=policy.status_age(jobs_policy, walk.statuses),
            hold=hold,
        )
        for status, count, oldest in conn.execute(query, {"cutoff": walk.cutoff, "now": now}):
            before, first = found.get(status, (0, None))
            found[status] = (before + count, min(o for o in (first, oldest) if o is not None))
    return found


def held(conn: psycopg.Connection, jobs_policy: policies.JobsPolicy, now: dt.datetime) -> int:
    """How many jobs the prune would delete now but for a hold (0 without any job hold)."""
    row = conn.execute(holds.holds_on_jobs()).fetchone()
    if not (row and row[0]):
        return 0
    walks = policy.walks(jobs_policy, now)
    pairs = [(walk.event_type, status) for walk in walks for status in walk.statuses]
    if not pairs:
        return 0
    statuses = tuple(dict.fromkeys(status for _, status in pairs))
    query = queries.get("held_jobs").format(
        hold=holds.job_held("j"),
        pairs=sql.SQL(", ").join(
            sql.SQL("({}::procrastinate_job_event_type, {}::procrastinate_job_status)").format(
                sql.Literal(kind), sql.Literal(status)
            )
            for kind, status in pairs
        ),
        age=policy.status_age(jobs_policy, statuses),
    )
    with conn.transaction():
        # The planner's estimate of the hold condition is far too high (it cannot see how few
        # jobs the holds name), which would have the statement compiled by JIT first: 0.45 s
        # at 1M jobs for a statement that then runs in 0.13 s.
        conn.execute("SET LOCAL jit = off")
        found = conn.execute(query, {"now": now}).fetchone()
    return int(found[0]) if found else 0


def _prune_queries(
    jobs_policy: policies.JobsPolicy,
    live: list[policy.Walk],
    archive: archive_writer.Writer | None = None,
    set_based: paths.JobsPath | None = None,
) -> tuple[queries.Statement, batches.Fused]:
    """The dry run's select and the real run's fused statement, composed from the same scan and
    the same conditions, so that both select the same jobs. The select locks nothing; the fused
    statement deletes, skipping locked rows when asked (see batches.Segment.fused). On the
    `set_based` path the fused statement deletes the jobs only and returns their ids; the
    batch's hook (paths.finish_batch) deletes their events."""
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
        "old_enough": policy.old_enough(jobs_policy, statuses),
        "no_later_change": queries.get("prune_jobs_no_later_change"),
        "held": holds.job_held("j"),
    }
    branches = sql.SQL(" UNION ALL ").join(
        queries.get("prune_jobs_scan_type").format(
            event_type=sql.Literal(walk.event_type), cutoff=sql.Placeholder(_cutoff_name(walk))
        )
        for walk in live
    )
    scan = sql.Composed(
        [queries.get("prune_jobs_scan").format(branches=branches), policy.count_bounds(jobs_policy)]
    )

    eligible = queries.get("prune_jobs_eligible").format(**conditions)

    select = queries.get("prune_jobs_select").format(scan=scan, eligible=eligible)
    archived: queries.Statement = sql.SQL("")
    events: queries.Statement = sql.SQL("")
    lines: queries.Statement = sql.SQL("")
    if archive is not None:
        archived = queries.get("prune_jobs_archive_line")
        events = queries.get("prune_jobs_archive_events")
        lines = queries.get("prune_jobs_archive")
    before_commit = None if archive is None else deleter.archive_batch(archive)
    if set_based is not None:
        events = sql.SQL("")
        lines = sql.Composed(
            [
                queries.get("prune_jobs_gone_ids"),
                queries.get("prune_jobs_archive_jobs") if archive is not None else sql.SQL(""),
            ]
        )
        before_commit = paths.finish_batch(set_based, archive)
    waiting = queries.get("prune_jobs_delete").format(**conditions, archived=archived)
    skip_locked = queries.get("prune_jobs_delete_skip_locked").format(
        eligible=eligible, held=conditions["held"], archived=archived
    )
    fused = batches.Fused(
        waiting=queries.get("prune_jobs_fused").format(
            scan=scan, delete=sql.Composed([waiting, events]), archive=lines
        ),
        skip_locked=queries.get("prune_jobs_fused").format(
            scan=scan, delete=sql.Composed([skip_locked, events]), archive=lines
        ),
        before_commit=before_commit,
    )
    return select, fused


def _prune_params(
    live: list[policy.Walk], now: dt.datetime
) -> Callable[[tuple[Any, ...], int], dict[str, Any]]:
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


def _time_progress(oldest: dt.datetime, cutoff: dt.datetime) -> Callable[[tuple[Any, ...]], float]:
    span = max((cutoff - oldest).total_seconds(), 1e-6)

    def progress(key: tuple[Any, ...]) -> float:
        at: dt.datetime = key[0]
        return (at - oldest).total_seconds() / span

    return progress
