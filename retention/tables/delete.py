"""A table policy's batches: the rows, the children of the rows that went (cascading or not) and
the files of every row deleted into the outbox, in one statement of the batch's transaction; a row
an application's trigger keeps keeps its children and their files. A policy with archive_files
queues its files with archive = true: the drain copies them into the archive before unlinking."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from retention.archive import writer as archive_writer
from retention.engine import batches
from retention.pg import queries
from retention.tables import planning

logger = logging.getLogger(__name__)

_START = "-infinity"
_COUNTS = ("deleted", "child_rows", "files_queued")


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
) -> queries.Statement:
    paths, values = _paths(files)
    return queries.get(name).format(table=table, match=match, paths=paths, files=values)


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


class _Tree:
    """The pieces of the tree_* statements (see tables.sql) for one policy: the rows' CTE
    `gone`, one CTE per child over exactly the rows `gone` returns, and their files."""

    def __init__(self, plan: planning.Plan, *, archive: bool = False) -> None:
        self.plan = plan
        self.archive = archive
        referenced = sorted({c for child in plan.children for c in child.referenced})
        self.ref = {column: f"r{j}" for j, column in enumerate(referenced)}
        paths, self.values = _paths(plan.files)
        refs = [
            sql.SQL("t.{} AS {}").format(sql.Identifier(c), sql.Identifier(a))
            for c, a in self.ref.items()
        ]
        key = sql.SQL("t.{} AS k").format(sql.Identifier(plan.key.name))
        self.returning = sql.SQL(", ").join([key, paths, *refs])
        self.archived = sql.SQL(", to_jsonb(t) AS a") if archive else sql.SQL("")
        self.match = sql.SQL("t.{} = ANY(%(ids)s::{}[]) AND {}").format(
            sql.Identifier(plan.key.name), plan.key.cast, plan.eligible("t")
        )

    def rows(self, *, delete: bool) -> sql.Composable:
        form = (
            "DELETE FROM {0} AS t WHERE {1} RETURNING {2}{3}"
            if delete
            else "SELECT {2} FROM {0} AS t WHERE {1}"
        )
        return sql.SQL(form).format(
            self.plan.relation.ident, self.match, self.returning, self.archived
        )

    def of_gone(self, child: planning.Child) -> sql.Composable:
        """The child's rows referencing a row of `gone`."""
        if len(child.columns) == 1:
            return sql.SQL("t.{} = ANY(ARRAY(SELECT g.{} FROM gone AS g))").format(
                sql.Identifier(child.columns[0]), sql.Identifier(self.ref[child.referenced[0]])
            )
        return sql.SQL("({}) IN (SELECT {} FROM gone AS g)").format(
            sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in child.columns),
            sql.SQL(", ").join(
                sql.SQL("g.{}").format(sql.Identifier(self.ref[c])) for c in child.referenced
            ),
        )

    def children(self, *, delete: bool, seen: str) -> sql.Composable:
        """`, cI AS (...)` per child (deleting, or reading in a preview) and, for the children in
        `seen` ("kept": those whose foreign key lets a kept child stay; "all"), `sI` reading
        them: in tree_held with the row's identity and foreign key columns."""
        parts: list[sql.Composable] = []
        for i, child in enumerate(self.plan.children):
            paths, _ = _paths(child.files)
            match = self.of_gone(child)
            rowid = sql.SQL("t.tableoid AS rel, t.ctid AS row")
            if delete:
                body = sql.SQL("DELETE FROM {} AS t WHERE {} RETURNING {}, {}{}").format(
                    child.relation.ident, match, paths, rowid, self.archived
                )
            else:
                body = sql.SQL("SELECT {} FROM {} AS t WHERE {}").format(
                    paths, child.relation.ident, match
                )
            parts.append(sql.SQL(", {} AS ({})").format(sql.Identifier(f"c{i}"), body))
            if seen == "all" or (seen == "kept" and not child.checked):
                columns = [rowid] + [
                    sql.SQL("t.{} AS {}").format(sql.Identifier(c), sql.Identifier(f"f{n}"))
                    for n, c in enumerate(child.columns)
                ]
                parts.append(
                    sql.SQL(", {} AS (SELECT {} FROM {} AS t WHERE {})").format(
                        sql.Identifier(f"s{i}"),
                        sql.SQL(", ").join(columns),
                        child.relation.ident,
                        match,
                    )
                )
        return sql.Composed(parts)

    def files(self) -> sql.Composable:
        selects: list[sql.Composable] = []
        each = sql.SQL(
            "SELECT f.root, f.path, f.source FROM {} AS g "
            "CROSS JOIN LATERAL (VALUES {}) AS f (root, path, source)"
        )
        if self.plan.files:
            selects.append(each.format(sql.Identifier("gone"), self.values))
        for i, child in enumerate(self.plan.children):
            if child.files:
                _, values = _paths(child.files)
                selects.append(each.format(sql.Identifier(f"c{i}"), values))
        if not selects:
            return sql.SQL("SELECT NULL::text, NULL::text, NULL::text WHERE false")
        return sql.SQL(" UNION ALL ").join(selects)

    def child_rows(self) -> sql.Composable:
        counts = [
            sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(f"c{i}"))
            for i in range(len(self.plan.children))
        ]
        return sql.SQL(" + ").join(counts) if counts else sql.SQL("0")

    def held(self) -> sql.Composable:
        """How many children `sI` saw that `cI` did not delete (kept by a trigger)."""
        counts = [
            sql.SQL("(SELECT count(*) FROM {}) - (SELECT count(*) FROM {})").format(
                sql.Identifier(f"s{i}"), sql.Identifier(f"c{i}")
            )
            for i, child in enumerate(self.plan.children)
            if not child.checked
        ]
        return sql.SQL(" + ").join(counts) if counts else sql.SQL("0")

    def archive_lines(self) -> sql.Composable:
        """`, <lines> AS archive, <count> AS archive_rows` over `gone` and the children's CTEs
        (empty without archiving): one JSON line per deleted row, parents first."""
        if not self.archive:
            return sql.SQL("")
        line = sql.SQL(
            "SELECT {} AS part, json_build_object('table', json_build_array({}, {}), "
            "'row', x.a)::text AS line FROM {} AS x"
        )
        sources = [(self.plan.relation, "gone")] + [
            (child.relation, f"c{i}") for i, child in enumerate(self.plan.children)
        ]
        parts = [
            line.format(
                sql.Literal(n),
                sql.Literal(relation.schema),
                sql.Literal(relation.name),
                sql.Identifier(cte),
            )
            for n, (relation, cte) in enumerate(sources)
        ]
        counts = [
            sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(cte)) for _, cte in sources
        ]
        return sql.SQL(
            ", (SELECT string_agg(l.line, E'\\n' ORDER BY l.part) FROM ({}) AS l) AS archive, "
            "{} AS archive_rows"
        ).format(sql.SQL(" UNION ALL ").join(parts), sql.SQL(" + ").join(counts))

    def held_keys(self) -> sql.Composable:
        """The keys of the rows of `gone` that a child kept by a trigger references."""
        conditions = []
        for i, child in enumerate(self.plan.children):
            refers = sql.SQL(" AND ").join(
                sql.SQL("s.{} = g.{}").format(
                    sql.Identifier(f"f{n}"), sql.Identifier(self.ref[parent])
                )
                for n, parent in enumerate(child.referenced)
            )
            conditions.append(
                sql.SQL(
                    "EXISTS (SELECT 1 FROM {} AS s WHERE {} AND NOT EXISTS "
                    "(SELECT 1 FROM {} AS c WHERE c.rel = s.rel AND c.row = s.row))"
                ).format(sql.Identifier(f"s{i}"), refers, sql.Identifier(f"c{i}"))
            )
        if not conditions:
            return sql.SQL("ARRAY[]::{}[]").format(self.plan.key.cast)
        return sql.SQL("ARRAY(SELECT g.k FROM gone AS g WHERE {})").format(
            sql.SQL(" OR ").join(conditions)
        )


class _Kept(Exception):
    """A batch statement kept a child of a row it deleted: rolled back to its savepoint."""


class RowDeleter:
    """One batch of a table policy: its rows, the children of the rows that went and every file
    of what was deleted, in one statement (tree_delete), in the batch's transaction. A row that
    a BEFORE DELETE trigger keeps is simply not returned: its children and files stay. A child
    that a trigger keeps keeps its row too: the statement then fails on the foreign key, or sees
    the kept child, and is rolled back to its savepoint; the rows with a kept child are found
    (tree_held, rolled back as well) and the batch deleted without them. The preview runs the
    same selections, counting."""

    def __init__(
        self,
        plan: planning.Plan,
        params: dict[str, Any],
        run_id: int | None,
        archive: archive_writer.Writer | None = None,
    ) -> None:
        self.plan = plan
        self.params = {**params, "run_id": run_id}
        self.archive = archive
        archiving = _Tree(plan, archive=archive is not None)
        self.statement = queries.get("tree_delete").format(
            rows=archiving.rows(delete=True),
            children=archiving.children(delete=True, seen="kept"),
            files=archiving.files(),
            child_rows=archiving.child_rows(),
            held=archiving.held(),
            archive=archiving.archive_lines(),
            archive_files=sql.Literal(archive is not None and archive.files),
        )
        tree = _Tree(plan)
        self.preview_statement = queries.get("tree_preview").format(
            rows=tree.rows(delete=False),
            children=tree.children(delete=False, seen="none"),
            files=tree.files(),
            child_rows=tree.child_rows(),
        )
        self.held_statement = queries.get("tree_held").format(
            rows=tree.rows(delete=False),
            children=tree.children(delete=True, seen="all"),
            held_keys=tree.held_keys(),
        )

    def _counts(
        self, cur: psycopg.Cursor[Any], statement: queries.Statement, ids: list[Any]
    ) -> tuple[dict[str, int], int]:
        row = cur.execute(statement, {**self.params, "ids": ids}).fetchone()
        assert row is not None
        deleted, child_rows, files, held = row[:4]
        counts = {"deleted": deleted, "child_rows": child_rows, "files_queued": files}
        if self.archive is not None and statement is self.preview_statement:
            counts["archive_rows"] = deleted + child_rows
        elif self.archive is not None and statement is self.statement and not held and row[4]:
            counts.update(archive_writer.counts(self.archive.write(cur.connection, row[4], row[5])))
        return counts, held

    def _attempt(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        """The batch statement in a savepoint, rolled back when it raises: _Kept when it saw a
        child that a trigger kept, a foreign key error when such a child must go first."""
        with cur.connection.transaction():
            counts, held = self._counts(cur, self.statement, ids)
            if held:
                raise _Kept(held)
        return counts

    def _held(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> set[Any]:
        """The rows of the batch with a child that a trigger keeps (tree_held, rolled back)."""
        with cur.connection.transaction() as savepoint:
            row = cur.execute(self.held_statement, {**self.params, "ids": ids}).fetchone()
            raise psycopg.Rollback(savepoint)
        return set(row[0]) if row else set()

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        try:
            return self._attempt(cur, ids)
        except (_Kept, pg_errors.ForeignKeyViolation, pg_errors.RestrictViolation) as exc:
            failure: Exception = exc
        held = self._held(cur, ids)
        if not held:
            # Not a child a trigger keeps (a foreign key of a table further down, say): the error
            # stands, as it would without this check.
            if isinstance(failure, _Kept):
                raise RuntimeError(
                    f"{self.plan.name}: a trigger kept children of the batch's rows, then let "
                    "them all go"
                ) from None
            raise failure
        logger.info(
            "%s: %d rows kept: a trigger keeps some of their children",
            self.plan.name,
            len(held),
            extra={"action": "rows_held", "table": self.plan.name, "rows": len(held)},
        )
        rest = [key for key in ids if key not in held]
        if not rest:
            return dict.fromkeys(_COUNTS, 0)
        try:
            return self._attempt(cur, rest)
        except _Kept:
            raise RuntimeError(
                f"{self.plan.name}: a trigger kept children of rows whose children it let go a "
                "moment before"
            ) from None

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        counts, _ = self._counts(cur, self.preview_statement, ids)
        return counts


def target(
    conn: psycopg.Connection,
    plan: planning.Plan,
    cutoff: dt.datetime,
    *,
    skip: list[int],
    run_id: int | None,
    archive: archive_writer.Writer | None = None,
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
        return {
            **params,
            "after_ts": after[0],
            "after_key": after[1],
            "after": after[2],
            "limit": limit,
            "skip": skip,
        }

    row = conn.execute(queries.get("table_oldest").format(**fields), params).fetchone()
    oldest, first_key = row if row else (None, None)
    segment = batches.Segment(
        name=plan.name,
        select=queries.get("table_batch").format(**fields, lock=sql.SQL("")),
        locking_select=queries.get("table_batch").format(
            **fields, lock=sql.SQL("FOR UPDATE OF t SKIP LOCKED")
        ),
        params=batch_params,
        start=(_START, first_key, 0),
        key=("ts", "key", "after"),
        progress=_progress(oldest, cutoff),
    )
    return batches.Target(
        name=f"table:{plan.name}",
        segments=[segment],
        deleter=RowDeleter(plan, params, run_id, archive),
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
