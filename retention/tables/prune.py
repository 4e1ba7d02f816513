"""One table policy applied: its partitions lying entirely before the cutoff dropped whole, then
the rest walked row by row by the engine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import psycopg

from retention.archive import writer as archive_writer
from retention.engine import batches, results
from retention.holds import conditions as holds
from retention.tables import delete, partitions, planning

ProgressCallback = Callable[[results.TableSection, float], None]


def prune(
    conn: psycopg.Connection,
    plan: planning.Plan,
    now: dt.datetime,
    limits: batches.Limits,
    *,
    dry_run: bool,
    run_id: int | None,
    on_progress: ProgressCallback | None = None,
    archive: archive_writer.Writer | None = None,
) -> results.TableSection:
    """Delete (or, in a dry run, count) what the policy makes eligible now. With `archive`, no
    partition is dropped whole: every row goes row by row, through the archive."""
    cutoff = now - plan.age
    droppable = [] if archive is not None else partitions.droppable(conn, plan, cutoff)
    drops = partitions.drop(conn, plan, droppable, cutoff, limits, dry_run=dry_run, run_id=run_id)

    def section(walk: results.Walk, held: int = 0) -> results.TableSection:
        return results.TableSection(
            held=held,
            walk=walk,
            cutoff=cutoff,
            partitions=drops.dropped,
            partition_errors=drops.problems,
            warnings=plan.warnings,
            stopped_in_partitions=drops.stopped,
            partition_pacing=drops.pacing,
        )

    if drops.stopped:
        return section(results.Walk(stopped=drops.stopped))

    def report(result: batches.Result) -> None:
        if on_progress is not None:
            on_progress(section(result.freeze()), result.fraction)

    # A dry run dropped nothing: the walk leaves out the partitions the real run drops.
    skip = [p.oid for p in droppable] if dry_run else []
    result = batches.run(
        conn,
        delete.target(conn, plan, cutoff, skip=skip, run_id=run_id, archive=archive),
        limits,
        dry_run=dry_run,
        on_progress=report,
    )
    return section(result.freeze(), held(conn, plan, cutoff))


def held(conn: psycopg.Connection, plan: planning.Plan, cutoff: dt.datetime) -> int:
    """How many rows the policy would delete now but for a legal hold (0 when no hold names the
    table): driven by the holds."""
    statement, params = holds.holds_on_table(plan.relation)
    row = conn.execute(statement, params).fetchone()
    if not (row and row[0]):
        return 0
    count = conn.execute(
        holds.held_rows_count(plan.relation, plan.key, plan.condition("t")), plan.params(cutoff)
    ).fetchone()
    return int(count[0]) if count else 0
