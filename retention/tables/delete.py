"""A table policy's batches: children first (deleted, or only their files queued when the foreign
key cascades), then the rows, every file into the outbox, in the batch's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from retention.engine import batches
from retention.pg import queries
from retention.tables import planning

_START = "-infinity"


def _paths(files: tuple[planning.FileSource, ...]) -> tuple[sql.Composable, sql.Composable]:
    """The RETURNING / SELECT list of file columns, and the VALUES triples built from them."""
    if not files:
        return sql.SQL("NULL::text AS p0"), sql.SQL("(NULL::text, g.p0, NULL::text)")
    paths = sql.SQL(", ").join(
        sql.SQL("t.{}::text AS {}").format(sql.Identifier(f.column), sql.Identifier(f"p{i}"))
        for i, f in enumerate(files)
    )
    values = sql.SQL(", ").join(
        sql.SQL("({}::text, g.{}, {}::text)").format(
            sql.Literal(str(f.root)), sql.Identifier(f"p{i}"), sql.Literal(f.source)
        )
        for i, f in enumerate(files)
    )
    return paths, values


def rows_statement(
    name: str,
    table: sql.Composable,
    files: tuple[planning.FileSource, ...],
    match: sql.Composable,
    lock: str = "",
) -> queries.Statement:
    paths, values = _paths(files)
    return queries.get(name).format(
        table=table, match=match, paths=paths, files=values, lock=sql.SQL(lock)
    )


def child_match(
    child: planning.Child, parent: sql.Composable, where: sql.Composable, *, batch: bool
) -> sql.Composable:
    """The child rows of the parent rows matching `where`. For a batch on a single-column key:
    `= ANY(ARRAY(...))`, which the planner serves with the index on the child's column (a
    semi-join may pick a scan of the whole child table for every batch); for a whole partition:
    a semi-join, which may hash."""
    if batch and len(child.columns) == 1:
        return sql.SQL("t.{} = ANY(ARRAY(SELECT p.{} FROM {} AS p WHERE {}))").format(
            sql.Identifier(child.columns[0]),
            sql.Identifier(child.referenced[0]),
            parent,
            where,
        )
    return sql.SQL("({}) IN (SELECT {} FROM {} AS p WHERE {})").format(
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in child.columns),
        sql.SQL(", ").join(sql.SQL("p.{}").format(sql.Identifier(c)) for c in child.referenced),
        parent,
        where,
    )


class RowDeleter:
    """One batch of a table policy: children first (deleted, or only their files queued when the
    foreign key cascades), then the rows, every file into the outbox, in the batch's transaction.
    The preview runs the same selections, counting."""

    def __init__(self, plan: planning.Plan, params: dict[str, Any], run_id: int | None) -> None:
        self.params = {**params, "run_id": run_id}
        by_key = sql.SQL("{}.{} = ANY(%(ids)s::{}[]) AND {}")
        mine, theirs = (
            by_key.format(
                sql.Identifier(alias),
                sql.Identifier(plan.key.name),
                plan.key.cast,
                plan.eligible(alias),
            )
            for alias in ("t", "p")
        )
        self.steps: list[tuple[queries.Statement, queries.Statement]] = []
        for child in plan.children:
            match = child_match(child, plan.relation.ident, theirs, batch=True)
            action = (
                rows_statement(
                    "rows_collect", child.relation.ident, child.files, match, "FOR UPDATE OF t"
                )
                if child.cascades
                else rows_statement("rows_delete", child.relation.ident, child.files, match)
            )
            self.steps.append(
                (action, rows_statement("rows_preview", child.relation.ident, child.files, match))
            )
        self.steps.append(
            (
                rows_statement("rows_delete", plan.relation.ident, plan.files, mine),
                rows_statement("rows_preview", plan.relation.ident, plan.files, mine),
            )
        )

    def _run(self, cur: psycopg.Cursor[Any], ids: list[Any], preview: bool) -> dict[str, int]:
        params = {**self.params, "ids": ids}
        counts = []
        for action, count in self.steps:
            row = cur.execute(count if preview else action, params).fetchone()
            assert row is not None
            counts.append(row)
        *children, (deleted, queued) = counts
        return {
            "deleted": deleted,
            "child_rows": sum(rows for rows, _ in children),
            "files_queued": queued + sum(files for _, files in children),
        }

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        return self._run(cur, ids, preview=False)

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        return self._run(cur, ids, preview=True)


def target(
    conn: psycopg.Connection,
    plan: planning.Plan,
    cutoff: dt.datetime,
    *,
    skip: list[int],
    run_id: int | None,
) -> batches.Target:
    """The engine target of a policy: one keyset walk on (timestamp, key) over the old rows,
    leaving out the partitions in `skip` (those a dry run counts as dropped)."""
    params = plan.params(cutoff)
    fields = {
        "table": plan.relation.ident,
        "ts": sql.Identifier(plan.timestamp.name),
        "key": sql.Identifier(plan.key.name),
        "ts_type": plan.timestamp.cast,
        "key_type": plan.key.cast,
        "eligible": plan.eligible("t"),
    }

    def batch_params(after: tuple[Any, ...], limit: int) -> dict[str, Any]:
        return {**params, "after_ts": after[0], "after_key": after[1], "limit": limit, "skip": skip}

    row = conn.execute(queries.get("table_oldest").format(**fields), params).fetchone()
    oldest = row[0] if row else None
    segment = batches.Segment(
        name=plan.name,
        select=queries.get("table_batch").format(**fields, lock=sql.SQL("")),
        locking_select=queries.get("table_batch").format(
            **fields, lock=sql.SQL("FOR UPDATE OF t SKIP LOCKED")
        ),
        params=batch_params,
        start=(_START, None),
        key=("ts", "key"),
        progress=_progress(oldest, cutoff),
    )
    return batches.Target(
        name=f"table:{plan.name}", segments=[segment], deleter=RowDeleter(plan, params, run_id)
    )


def _progress(oldest: Any, cutoff: dt.datetime) -> Callable[[tuple[Any, ...]], float] | None:
    if oldest is None:
        return None

    def seconds(value: Any) -> float:
        if isinstance(value, dt.datetime):
            aware: dt.datetime = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
            return aware.timestamp()
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
        return 0.0

    start, end = seconds(oldest), seconds(cutoff)
    span = max(end - start, 1e-6)
    return lambda key: (seconds(key[0]) - start) / span
