"""Partitions of a table range-partitioned on its timestamp that lie entirely before the cutoff:
their children deleted and files queued first, then DETACH and DROP, in the same transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import time
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from retention.engine import batches, results
from retention.holds import conditions as holds
from retention.pg import catalog, queries
from retention.tables import delete, planning

logger = logging.getLogger(__name__)

PARTITION_ATTEMPTS = 4


def droppable(
    conn: psycopg.Connection, plan: planning.Plan, cutoff: dt.datetime
) -> list[catalog.Partition]:
    """Partitions whose every possible row is older than the cutoff, oldest first. Never with
    filters (a partition drop would take rows the filters keep), never one holding a row a legal
    hold names (its rows go row by row, by the walk, which leaves the held ones)."""
    if not plan.partitioned or plan.filters:
        return []
    found = [p for p in catalog.partitions(conn, plan.relation.oid) if p.upper is not None]
    if not found:
        return []
    by_bound = {p.upper: p for p in found}
    rows = conn.execute(
        queries.get("bounds_before").format(ts_type=plan.timestamp.cast),
        {"bounds": list(by_bound), "cutoff": cutoff},
    ).fetchall()
    return [
        by_bound[bound]
        for bound, before in rows
        if before and not _held(conn, plan, by_bound[bound])
    ]


def _held(
    conn: psycopg.Connection | psycopg.Cursor[Any],
    plan: planning.Plan,
    partition: catalog.Partition,
) -> bool:
    """Whether the partition holds a row a legal hold names."""
    statement = holds.partition_held(plan.relation, plan.key, partition.ident)
    row = conn.execute(statement).fetchone()
    return bool(row and row[0])


def _drop_one(
    cur: psycopg.Cursor[Any],
    plan: planning.Plan,
    partition: catalog.Partition,
    params: dict[str, Any],
    dry_run: bool,
) -> results.PartitionDrop | None:
    """Children of the partition's rows first (all of them: a cascade does not reach across a
    detach), its files into the outbox, then DETACH and DROP. In a dry run: the counts. None,
    nothing done, when a legal hold names a row of it now (placed since `droppable` looked):
    the row-by-row walk takes its other rows."""
    scan = bool(plan.files or plan.children)
    everything = sql.SQL("true")
    child_rows = files = 0
    rows = partition.estimated_rows
    if not dry_run:
        cur.execute(queries.get("lock_partition").format(partition=partition.ident))
        if _held(cur, plan, partition):
            logger.info(
                "partition %s of %s holds a held row: pruned row by row instead",
                partition.display,
                plan.name,
                extra={"action": "partition_held", "table": plan.name},
            )
            return None
    for child in plan.children:
        match = delete.child_match(child, partition.ident, everything, batch=False)
        name = "rows_preview" if dry_run else "rows_delete"
        count, queued = _counts(
            cur, delete.rows_statement(name, child.relation.ident, child.files, match), params
        )
        child_rows += count
        files += queued
    if scan:
        name = "rows_preview" if dry_run else "rows_collect"
        rows, queued = _counts(
            cur, delete.rows_statement(name, partition.ident, plan.files, everything), params
        )
        files += queued
    if not dry_run:
        cur.execute(
            queries.get("detach_partition").format(
                table=plan.relation.ident, partition=partition.ident
            )
        )
        cur.execute(queries.get("drop_partition").format(partition=partition.ident))
    return results.PartitionDrop(
        name=partition.display,
        rows=rows,
        rows_exact=scan,
        child_rows=child_rows,
        files_queued=files,
    )


def _counts(
    cur: psycopg.Cursor[Any], statement: queries.Statement, params: dict[str, Any]
) -> tuple[int, int]:
    """Rows and files of a rows_* statement (see tables.sql)."""
    row = cur.execute(statement, params).fetchone()
    if row is None:
        raise RuntimeError("a rows_* statement returned no row")
    return int(row[0]), int(row[1])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Drops:
    """What a policy's partition drops did: the partitions that went, the errors of those that
    could not (left to the row-by-row walk), and why they stopped early, if they did."""

    dropped: tuple[results.PartitionDrop, ...] = ()
    problems: tuple[str, ...] = ()
    stopped: results.StopReason | None = None
    # How the drops were paced (each transaction of drops but the run's first waits as a
    # batch does: batches.Pacer); None when the run is not paced or nothing was droppable.
    pacing: results.Pacing | None = None


def drop(
    conn: psycopg.Connection,
    plan: planning.Plan,
    partitions: list[catalog.Partition],
    cutoff: dt.datetime,
    limits: batches.Limits,
    *,
    dry_run: bool,
    run_id: int | None,
) -> Drops:
    """Drop (or, in a dry run, count) the partitions lying entirely before the cutoff, oldest
    first, as many per transaction as fit in the engine's share of max_batch_seconds. When a
    transaction fails (a lock not granted within lock_timeout, a foreign key), the rest goes
    one partition per transaction; a partition that still cannot go is left to the row-by-row
    walk."""
    todo = list(partitions)
    dropped: list[results.PartitionDrop] = []
    problems: list[str] = []
    params = {**plan.params(cutoff), "run_id": run_id}
    budget = batches.TARGET_SHARE * limits.max_batch_seconds
    single = False
    attempts = 0
    paced = batches.PaceCounts()
    pacer = batches.Pacer(conn, limits, paced, dry_run=dry_run, name=plan.name)
    while todo:
        reason = limits.stop_reason() or (pacer.before_batch() if attempts == 0 else None)
        if reason:
            return Drops(
                dropped=tuple(dropped),
                problems=tuple(problems),
                stopped=reason,
                pacing=paced.pacing(limits.paced),
            )
        try:
            went = _drop_group(conn, plan, todo, params, limits, 0.0 if single else budget, dry_run)
        except psycopg.Error as exc:
            if not single:
                single = True
                continue
            attempts += 1
            retry = isinstance(exc, pg_errors.LockNotAvailable | pg_errors.QueryCanceled)
            if retry and attempts < PARTITION_ATTEMPTS:
                time.sleep(random.uniform(0.02, 0.1) * attempts)
                continue
            partition = todo.pop(0)
            attempts = 0
            problems.append(f"{partition.display}: {type(exc).__name__}: {exc}")
            logger.warning(
                "could not drop partition %s of %s: %s",
                partition.display,
                plan.name,
                exc,
                extra={"action": "partition_failed", "table": plan.name},
            )
            continue
        attempts = 0
        pacer.after_batch()
        del todo[: len(went)]
        outcomes = [outcome for outcome in went if outcome is not None]
        dropped.extend(outcomes)
        for outcome in outcomes:
            logger.info(
                "%s partition %s of %s",
                "would drop" if dry_run else "dropped",
                outcome.name,
                plan.name,
                extra={
                    "action": "partition_dropped",
                    "table": plan.name,
                    "partition": outcome.name,
                    "rows": outcome.rows,
                    "child_rows": outcome.child_rows,
                    "files_queued": outcome.files_queued,
                },
            )
    return Drops(
        dropped=tuple(dropped),
        problems=tuple(problems),
        pacing=paced.pacing(limits.paced) if partitions else None,
    )


def _drop_group(
    conn: psycopg.Connection,
    plan: planning.Plan,
    todo: list[catalog.Partition],
    params: dict[str, Any],
    limits: batches.Limits,
    budget: float,
    dry_run: bool,
) -> list[results.PartitionDrop | None]:
    """One transaction: partitions from the start of `todo` until `budget` seconds are spent
    (at least one)."""
    started = time.monotonic()
    went: list[results.PartitionDrop | None] = []
    timeout = f"{limits.lock_timeout_ms}ms"
    with conn.transaction(), conn.cursor() as cur:
        if dry_run:
            cur.execute("SET TRANSACTION READ ONLY")
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
        for partition in todo:
            went.append(_drop_one(cur, plan, partition, params, dry_run))
            if time.monotonic() - started >= budget:
                break
    return went
