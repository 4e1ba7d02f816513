"""Table policies -> what the engine deletes: old application rows, their children first, their
files queued in the file outbox in the same transaction.

Policies are checked against the catalog before anything runs (`check`). A table range-partitioned
on its timestamp column loses the partitions lying entirely before the cutoff by DETACH + DROP
(their children deleted and files queued first, in the same transaction); the rest is walked row
by row by the engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from retention import errors
from retention.config import settings as settings_mod
from retention.engine import batches
from retention.pg import catalog, queries

logger = logging.getLogger(__name__)

PARTITION_ATTEMPTS = 4
_START = "-infinity"


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileSource:
    column: str
    root: Path
    source: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Child:
    relation: catalog.Relation
    columns: tuple[str, ...]
    referenced: tuple[str, ...]
    cascades: bool
    files: tuple[FileSource, ...]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """A table policy resolved against the catalog."""

    name: str
    relation: catalog.Relation
    timestamp: catalog.Column
    key: catalog.Column
    age: dt.timedelta
    filters: tuple[tuple[catalog.Column, tuple[str, ...]], ...]
    files: tuple[FileSource, ...]
    children: tuple[Child, ...]
    partitioned: bool
    warnings: tuple[str, ...]

    def eligible(self, alias: str = "t") -> sql.Composable:
        """The policy's condition on a row: older than the cutoff, and every filter."""
        t = sql.Identifier(alias)
        parts: list[sql.Composable] = [
            sql.SQL("{}.{} < %(cutoff)s::{}").format(
                t, sql.Identifier(self.timestamp.name), self.timestamp.cast
            )
        ]
        for index, (column, _) in enumerate(self.filters):
            parts.append(
                sql.SQL("{}.{} = ANY({}::text[]::{}[])").format(
                    t, sql.Identifier(column.name), sql.Placeholder(f"w{index}"), column.cast
                )
            )
        return sql.SQL(" AND ").join(parts)

    def params(self, cutoff: dt.datetime) -> dict[str, Any]:
        values: dict[str, Any] = {"cutoff": cutoff}
        for index, (_, wanted) in enumerate(self.filters):
            values[f"w{index}"] = list(wanted)
        return values


class _Problems(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check(
    conn: psycopg.Connection, settings: settings_mod.Settings, *, warn: bool = False
) -> list[Plan]:
    """Resolve every enabled table policy against the catalog; raise ConfigError listing every
    problem (nothing runs then). With warn=True, log the warnings (missing indexes)."""
    plans: list[Plan] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, policy in enumerate(settings.tables):
        if not policy.enabled:
            continue
        name = policy.table
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        try:
            plans.append(_plan(conn, settings, policy, name))
        except _Problems as exc:
            problems.extend(f"tables[{index}] ({policy.table}): {p}" for p in exc.problems)
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise errors.ConfigError(f"invalid table policies, nothing was run:\n{listed}")
    if warn:
        for plan in plans:
            for warning in plan.warnings:
                logger.warning(
                    "%s: %s",
                    plan.name,
                    warning,
                    extra={"action": "policy_warning", "table": plan.name},
                )
    return plans


def _plan(
    conn: psycopg.Connection,
    settings: settings_mod.Settings,
    policy: settings_mod.TablePolicy,
    name: str,
) -> Plan:
    relation = catalog.relation(conn, policy.table)
    if relation is None:
        raise _Problems(
            [
                f"table {policy.table!r} does not exist (check the spelling; schema-qualify it, "
                "e.g. app.events, when its schema is not on the search_path)"
            ]
        )
    if relation.kind not in ("r", "p"):
        raise _Problems([f"{relation.display} is not a table (relkind {relation.kind})"])
    problems: list[str] = []
    warnings: list[str] = []
    timestamp = _column(relation, policy.timestamp, "timestamp", problems)
    if timestamp is not None and timestamp.type_name not in catalog.TIME_TYPES:
        problems.append(
            f"timestamp column {timestamp.name!r} is {timestamp.type_sql}; it must be "
            "timestamptz, timestamp or date"
        )
    key = _key(conn, relation, policy, problems)
    filters = []
    for column_name, wanted in policy.where.items():
        column = _column(relation, column_name, "where", problems)
        items = wanted if isinstance(wanted, list) else [wanted]
        if column is not None:
            filters.append((column, tuple(_text(item) for item in items)))
    files = _files(relation, policy.files, "files", problems)
    children = _children(conn, relation, policy, problems, warnings)
    problems.extend(_unhandled_references(conn, relation, children))
    if problems:
        raise _Problems(problems)
    assert timestamp is not None and key is not None
    if not catalog.has_leading_index(conn, relation.oid, timestamp):
        statement = sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({}, {});").format(
            relation.ident, sql.Identifier(timestamp.name), sql.Identifier(key.name)
        )
        warnings.append(
            f"no index starts with {timestamp.name!r}: every batch scans the table; run "
            f"`{statement.as_string(conn)}`"
        )
    partitioned = (
        relation.kind == "p"
        and catalog.range_partition_column(conn, relation.oid) == timestamp.attnum
    )
    return Plan(
        name=name,
        relation=relation,
        timestamp=timestamp,
        key=key,
        age=settings.table_age(policy),
        filters=tuple(filters),
        files=files,
        children=children,
        partitioned=partitioned,
        warnings=tuple(warnings),
    )


def _column(
    relation: catalog.Relation, name: str, key: str, problems: list[str]
) -> catalog.Column | None:
    column = relation.columns.get(name)
    if column is None:
        known = ", ".join(relation.columns)
        problems.append(f"{key}: {relation.display} has no column {name!r} (columns: {known})")
    return column


def _key(
    conn: psycopg.Connection,
    relation: catalog.Relation,
    policy: settings_mod.TablePolicy,
    problems: list[str],
) -> catalog.Column | None:
    uniques = catalog.unique_keys(conn, relation.oid)
    if policy.key is None:
        primary = [columns for is_primary, columns in uniques if is_primary]
        if not primary:
            problems.append(
                f"{relation.display} has no primary key: set `key` to a column that identifies "
                "a row (unique)"
            )
            return None
        if len(primary[0]) != 1:
            problems.append(
                f"{relation.display} has a multi-column primary key ({', '.join(primary[0])}): "
                "set `key` to the column that identifies a row, e.g. "
                f'key = "{primary[0][0]}"'
            )
            return None
        return relation.columns[primary[0][0]]
    column = _column(relation, policy.key, "key", problems)
    if column is None:
        return None
    allowed = {policy.key, policy.timestamp}
    if not any(policy.key in cols and set(cols) <= allowed for _, cols in uniques):
        problems.append(
            f"key {policy.key!r} is not unique in {relation.display}: it needs a unique index "
            "or primary key on it (alone, or with the timestamp column)"
        )
        return None
    return column


def _files(
    relation: catalog.Relation,
    configured: list[settings_mod.FileColumn],
    key: str,
    problems: list[str],
) -> tuple[FileSource, ...]:
    found = []
    for index, file_column in enumerate(configured):
        column = _column(relation, file_column.column, f"{key}[{index}].column", problems)
        if column is None:
            continue
        if not column.textual:
            problems.append(
                f"{key}[{index}].column: {relation.display}.{column.name} is {column.type_sql}; "
                "a file column must hold text paths"
            )
            continue
        if file_column.delete:
            found.append(
                FileSource(
                    column=column.name,
                    root=file_column.root,
                    source=f"table:{relation.display}.{column.name}",
                )
            )
    return tuple(found)


def _children(
    conn: psycopg.Connection,
    parent: catalog.Relation,
    policy: settings_mod.TablePolicy,
    problems: list[str],
    warnings: list[str],
) -> tuple[Child, ...]:
    references = catalog.foreign_keys_to(conn, parent.oid)
    found = []
    for index, child in enumerate(policy.children):
        where = f"children[{index}]"
        relation = catalog.relation(conn, child.table)
        if relation is None:
            problems.append(f"{where}: table {child.table!r} does not exist")
            continue
        column = _column(relation, child.column, f"{where}.column", problems)
        files = _files(relation, child.files, f"{where}.files", problems)
        if column is None:
            continue
        keys = [
            fk for fk in references if fk.child_oid == relation.oid and column.name in fk.columns
        ]
        if len(keys) != 1:
            problems.append(
                f"{where}: {relation.display}.{column.name} does not reference "
                f"{parent.display}: give the child column that has a FOREIGN KEY ... "
                f"REFERENCES {parent.display}"
                if not keys
                else f"{where}: {relation.display}.{column.name} is in several foreign keys to "
                f"{parent.display} ({', '.join(fk.name for fk in keys)})"
            )
            continue
        fk = keys[0]
        first = relation.columns[fk.columns[0]]
        if not catalog.has_leading_index(conn, relation.oid, first):
            statement = sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({});").format(
                relation.ident, sql.SQL(", ").join(sql.Identifier(c) for c in fk.columns)
            )
            warnings.append(
                f"{where}: no index on {relation.display}({', '.join(fk.columns)}): finding "
                f"children scans the table; run `{statement.as_string(conn)}`"
            )
        found.append(
            Child(
                relation=relation,
                columns=fk.columns,
                referenced=fk.referenced,
                cascades=fk.cascades,
                files=files,
            )
        )
    return tuple(found)


def _unhandled_references(
    conn: psycopg.Connection, parent: catalog.Relation, children: tuple[Child, ...]
) -> list[str]:
    """Foreign keys that would make deleting a row fail: neither cascading nor configured."""
    handled = {(child.relation.oid, child.columns) for child in children}
    problems = []
    for fk in catalog.foreign_keys_to(conn, parent.oid):
        if fk.on_delete not in ("a", "r") or (fk.child_oid, fk.columns) in handled:
            continue
        problems.append(
            f"{fk.child}({', '.join(fk.columns)}) references {parent.display} with ON DELETE "
            f"{catalog.ON_DELETE[fk.on_delete]}: add it to `children` (table = "
            f'"{fk.child}", column = "{fk.columns[0]}") or make the foreign key ON DELETE CASCADE'
        )
    return problems


def _paths(files: tuple[FileSource, ...]) -> tuple[sql.Composable, sql.Composable]:
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


def _rows(
    name: str,
    table: sql.Composable,
    files: tuple[FileSource, ...],
    match: sql.Composable,
    lock: str = "",
) -> sql.Composable:
    paths, values = _paths(files)
    return queries.get(name).format(
        table=table, match=match, paths=paths, files=values, lock=sql.SQL(lock)
    )


def _child_match(
    child: Child, parent: sql.Composable, where: sql.Composable, *, batch: bool
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

    def __init__(self, plan: Plan, params: dict[str, Any], run_id: int | None) -> None:
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
        self.steps: list[tuple[sql.Composable, sql.Composable]] = []
        for child in plan.children:
            match = _child_match(child, plan.relation.ident, theirs, batch=True)
            action = (
                _rows("rows_collect", child.relation.ident, child.files, match, "FOR UPDATE OF t")
                if child.cascades
                else _rows("rows_delete", child.relation.ident, child.files, match)
            )
            self.steps.append(
                (action, _rows("rows_preview", child.relation.ident, child.files, match))
            )
        self.steps.append(
            (
                _rows("rows_delete", plan.relation.ident, plan.files, mine),
                _rows("rows_preview", plan.relation.ident, plan.files, mine),
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
    plan: Plan,
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

    def select(lock: bool) -> sql.Composable:
        return queries.get("table_batch").format(
            **fields, lock=sql.SQL("FOR UPDATE OF t SKIP LOCKED" if lock else "")
        )

    def batch_params(after: tuple[Any, ...], limit: int) -> dict[str, Any]:
        return {**params, "after_ts": after[0], "after_key": after[1], "limit": limit, "skip": skip}

    row = conn.execute(queries.get("table_oldest").format(**fields), params).fetchone()
    oldest = row[0] if row else None
    segment = batches.Segment(
        name=plan.name,
        select=select,
        params=batch_params,
        start=(_START, None),
        key_width=2,
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
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value.timestamp()
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp()
        return 0.0

    start, end = seconds(oldest), seconds(cutoff)
    span = max(end - start, 1e-6)
    return lambda key: (seconds(key[0]) - start) / span


def _droppable(
    conn: psycopg.Connection, plan: Plan, cutoff: dt.datetime
) -> list[catalog.Partition]:
    """Partitions whose every possible row is older than the cutoff, oldest first. Never with
    filters (a partition drop would take rows the filters keep)."""
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
    return [by_bound[bound] for bound, before in rows if before]


def _drop_one(
    cur: psycopg.Cursor[Any],
    plan: Plan,
    partition: catalog.Partition,
    params: dict[str, Any],
    dry_run: bool,
) -> dict[str, Any]:
    """Children of the partition's rows first (all of them: a cascade does not reach across a
    detach), its files into the outbox, then DETACH and DROP. In a dry run: the counts."""
    scan = bool(plan.files or plan.children)
    everything = sql.SQL("true")
    child_rows = files = 0
    rows = partition.estimated_rows
    if not dry_run:
        cur.execute(queries.get("lock_partition").format(partition=partition.ident))
    for child in plan.children:
        match = _child_match(child, partition.ident, everything, batch=False)
        name = "rows_preview" if dry_run else "rows_delete"
        count, queued = cur.execute(
            _rows(name, child.relation.ident, child.files, match), params
        ).fetchone()  # type: ignore[misc]
        child_rows += count
        files += queued
    if scan:
        name = "rows_preview" if dry_run else "rows_collect"
        rows, queued = cur.execute(
            _rows(name, partition.ident, plan.files, everything), params
        ).fetchone()  # type: ignore[misc]
        files += queued
    if not dry_run:
        cur.execute(
            queries.get("detach_partition").format(
                table=plan.relation.ident, partition=partition.ident
            )
        )
        cur.execute(queries.get("drop_partition").format(partition=partition.ident))
    return {
        "name": partition.display,
        "rows": rows,
        "rows_exact": scan,
        "child_rows": child_rows,
        "files_queued": files,
    }


def drop_partitions(
    conn: psycopg.Connection,
    plan: Plan,
    cutoff: dt.datetime,
    limits: batches.Limits,
    *,
    dry_run: bool,
    run_id: int | None,
) -> tuple[list[dict[str, Any]], list[str], str | None]:
    """Drop (or, in a dry run, count) the partitions lying entirely before the cutoff, oldest
    first, as many per transaction as fit in the engine's share of max_batch_seconds. When a
    transaction fails (a lock not granted within lock_timeout, a foreign key), the rest goes
    one partition per transaction; a partition that still cannot go is left to the row-by-row
    walk. Returns what went, the errors, and why it stopped early (if it did)."""
    todo = _droppable(conn, plan, cutoff)
    dropped: list[dict[str, Any]] = []
    problems: list[str] = []
    params = {**plan.params(cutoff), "run_id": run_id}
    budget = batches.TARGET_SHARE * limits.max_batch_seconds
    single = False
    attempts = 0
    while todo:
        reason = limits.stop_reason()
        if reason:
            return dropped, problems, reason
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
        del todo[: len(went)]
        dropped.extend(went)
        for outcome in went:
            logger.info(
                "%s partition %s of %s",
                "would drop" if dry_run else "dropped",
                outcome["name"],
                plan.name,
                extra={"action": "partition_dropped", "table": plan.name, **outcome},
            )
    return dropped, problems, None


def _drop_group(
    conn: psycopg.Connection,
    plan: Plan,
    todo: list[catalog.Partition],
    params: dict[str, Any],
    limits: batches.Limits,
    budget: float,
    dry_run: bool,
) -> list[dict[str, Any]]:
    """One transaction: partitions from the start of `todo` until `budget` seconds are spent
    (at least one)."""
    started = time.monotonic()
    went: list[dict[str, Any]] = []
    timeout = f"{int(limits.lock_timeout.total_seconds() * 1000)}ms"
    with conn.transaction(), conn.cursor() as cur:
        if dry_run:
            cur.execute("SET TRANSACTION READ ONLY")
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (timeout,))
        for partition in todo:
            went.append(_drop_one(cur, plan, partition, params, dry_run))
            if time.monotonic() - started >= budget:
                break
    return went


def prune(
    conn: psycopg.Connection,
    plans: list[Plan],
    limits: batches.Limits,
    now: dt.datetime,
    *,
    dry_run: bool,
    run_id: int | None,
    on_progress: Callable[[dict[str, Any], float], None] | None = None,
) -> dict[str, Any]:
    """Apply every plan in order. Returns {table: section}, plus "stopped" when cut short."""
    sections: dict[str, Any] = {}
    total = max(len(plans), 1)
    for index, plan in enumerate(plans):
        cutoff = now - plan.age
        dropped, problems, stopped = drop_partitions(
            conn, plan, cutoff, limits, dry_run=dry_run, run_id=run_id
        )
        skip = [p.oid for p in _droppable(conn, plan, cutoff)] if dry_run else []
        base = {
            "cutoff": cutoff.isoformat(),
            "partitions_dropped": len(dropped),
            "partitions": dropped,
            "partition_rows": sum(p["rows"] for p in dropped),
            "warnings": list(plan.warnings),
        }
        if problems:
            base["partition_errors"] = problems

        def section(result: batches.Result, base: dict[str, Any] = base) -> dict[str, Any]:
            data = {**result.as_dict(), **base}
            data["child_rows"] = data.get("child_rows", 0) + sum(
                p["child_rows"] for p in base["partitions"]
            )
            data["files_queued"] = data.get("files_queued", 0) + sum(
                p["files_queued"] for p in base["partitions"]
            )
            return data

        if stopped:
            sections[plan.name] = section(
                batches.Result(target=plan.name, dry_run=dry_run, stopped=stopped)
            )
            sections["stopped"] = stopped
            break

        def report(
            result: batches.Result, i: int = index, name: str = plan.name, f=section
        ) -> None:
            sections[name] = f(result)
            if on_progress is not None:
                on_progress(sections, (i + result.fraction) / total)

        result = batches.run(
            conn,
            target(conn, plan, cutoff, skip=skip, run_id=run_id),
            limits,
            dry_run=dry_run,
            on_progress=report,
        )
        sections[plan.name] = section(result)
        if result.stopped in ("aborted", "time budget spent"):
            sections["stopped"] = result.stopped
            break
    return sections
