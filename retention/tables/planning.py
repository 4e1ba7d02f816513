"""Table policies resolved against the catalog, before anything runs: the table, its timestamp and
key columns, filters, file columns, children and their foreign keys, whether it is partitioned
on its timestamp. Every problem is listed at once (nothing runs then)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

import psycopg
from psycopg import sql

from retention import errors
from retention.config import policies
from retention.config import settings as settings_mod
from retention.holds import conditions as holds
from retention.pg import catalog, queries

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileSource:
    column: str
    root: str  # where the outbox says the files live (FileColumn.location)
    source: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Child:
    relation: catalog.Relation
    columns: tuple[str, ...]
    referenced: tuple[str, ...]
    on_delete: str
    files: tuple[FileSource, ...]

    @property
    def cascades(self) -> bool:
        return self.on_delete == catalog.CASCADE

    @property
    def checked(self) -> bool:
        """Whether its foreign key fails a delete that leaves one of its rows behind (NO ACTION,
        RESTRICT); a cascade or SET NULL lets a row a trigger keeps stay."""
        return self.on_delete in ("a", "r")


KEEP_LAST = "keep_last"
MAX_COUNT = "max_count"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Count:
    """A policy's count rule: `keep_last` (the newest `n` of each group never go) or `max_count`
    (every row beyond the newest `n` of each group goes), grouped by the `per` columns."""

    kind: str
    n: int
    per: tuple[catalog.Column, ...]


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
    count: Count | None = None
    # Whether the age applies: not for a `max_count` policy without an `age` of its own.
    aged: bool = True

    def eligible(self, alias: str = "t") -> sql.Composable:
        """The policy's condition on a row: older than the cutoff, every filter, and no legal
        hold names it (read by the statement itself: a hold placed during a run counts)."""
        return sql.SQL("{} AND NOT {}").format(
            self.condition(alias), holds.row_held(self.relation, self.key, alias)
        )

    def condition(self, alias: str = "t") -> sql.Composable:
        """The policy's own condition on a row, holds aside: every filter, and older than the
        cutoff; with a count rule, combined with it (see `beyond_newest`)."""
        t = sql.Identifier(alias)
        older = sql.SQL("{}.{} < %(cutoff)s::{}").format(
            t, sql.Identifier(self.timestamp.name), self.timestamp.cast
        )
        parts = [self._filters(alias)]
        if self.count is None:
            parts.append(older)
        elif self.count.kind == KEEP_LAST:
            ungrouped = [
                sql.SQL("{}.{} IS NULL").format(t, sql.Identifier(c.name)) for c in self.count.per
            ]
            parts += [
                older,
                sql.SQL("({})").format(
                    sql.SQL(" OR ").join([*ungrouped, self.beyond_newest(alias)])
                ),
            ]
        elif self.aged:
            parts.append(sql.SQL("({} OR {})").format(older, self.beyond_newest(alias)))
        else:
            parts.append(self.beyond_newest(alias))
        return sql.SQL(" AND ").join(parts)

    def _filters(self, alias: str) -> sql.Composable:
        t = sql.Identifier(alias)
        parts: list[sql.Composable] = [
            sql.SQL("{}.{} = ANY({}::text[]::{}[])").format(
                t, sql.Identifier(column.name), sql.Placeholder(f"w{index}"), column.cast
            )
            for index, (column, _) in enumerate(self.filters)
        ]
        return sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")

    def beyond_newest(self, alias: str = "t") -> sql.Composable:
        """Whether the row is beyond the newest N of its group (false in no group, or in one of
        N rows or fewer), read by the statement itself (table_count_bound): a row inserted or
        deleted before the statement's snapshot counts."""
        assert self.count is not None
        t = sql.Identifier(alias)
        ts, key = sql.Identifier(self.timestamp.name), sql.Identifier(self.key.name)
        same = [
            sql.SQL("n.{0} = {1}.{0}").format(sql.Identifier(c.name), t) for c in self.count.per
        ]
        bound = queries.get("table_count_bound").format(
            ts=ts,
            key=key,
            table=self.relation.ident,
            same_group=sql.SQL(" AND ").join(same) if same else sql.SQL("true"),
            filters=self._filters("n"),
            offset=sql.Literal(self.count.n - 1),
        )
        return sql.SQL("({}.{}, {}.{}) < {}").format(t, ts, t, key, bound)

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
            plans.append(_plan(conn, settings, policy, name, f"tables[{index}]"))
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
    policy: policies.TablePolicy,
    name: str,
    key_prefix: str,
) -> Plan:
    relation = catalog.relation(conn, policy.table)
    if relation is None:
        raise _Problems(
            [
                f"table {policy.table!r} does not exist (check the spelling; schema-qualify it, "
                "e.g. app.events, when its schema is not on the search_path)"
            ]
        )
    protected = _protected(conn, relation)
    if protected:
        raise _Problems(protected)
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
    problems.extend(_uncastable(conn, relation, filters, f"{key_prefix}.where"))
    files = _files(relation, policy.files, "files", problems)
    children = _children(conn, relation, policy, problems, warnings)
    problems.extend(_unhandled_references(conn, relation, children))
    hooks = catalog.delete_hooks(conn, relation.oid)
    problems.extend(_rules(relation, hooks, ""))
    for index, child in enumerate(children):
        child_hooks = catalog.delete_hooks(conn, child.relation.oid)
        problems.extend(_rules(child.relation, child_hooks, f"children[{index}]: "))
    per = [_column(relation, name, "per", problems) for name in policy.per]
    if problems:
        raise _Problems(problems)
    assert timestamp is not None
    assert key is not None
    count = _count(conn, relation, policy, timestamp, key, [c for c in per if c], warnings)
    if not catalog.has_leading_index(conn, relation.oid, timestamp):
        statement = sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({}, {});").format(
            relation.ident, sql.Identifier(timestamp.name), sql.Identifier(key.name)
        )
        warnings.append(
            f"no index starts with {timestamp.name!r}: every batch scans the table; run "
            f"`{statement.as_string(conn)}`"
        )
    partitioned = (
        count is None
        and relation.kind == "p"
        and catalog.range_partition_column(conn, relation.oid) == timestamp.attnum
        and _droppable(conn, relation, hooks, warnings)
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
        count=count,
        aged=count is None or count.kind == KEEP_LAST or policy.age is not None,
    )


def _count(
    conn: psycopg.Connection,
    relation: catalog.Relation,
    policy: policies.TablePolicy,
    timestamp: catalog.Column,
    key: catalog.Column,
    per: list[catalog.Column],
    warnings: list[str],
) -> Count | None:
    """The policy's count rule, and a warning giving the index that finds a group's newest rows
    (per columns, timestamp, key) when no index starts with those columns."""
    if policy.keep_last is not None:
        kind, n = KEEP_LAST, policy.keep_last
    elif policy.max_count is not None:
        kind, n = MAX_COUNT, policy.max_count
    else:
        return None
    columns = [*per, timestamp]
    row = conn.execute(
        queries.text("catalog_index_on_columns"),
        {"oid": relation.oid, "attnums": [c.attnum for c in columns]},
    ).fetchone()
    if not (row and row[0]):
        statement = sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({});").format(
            relation.ident,
            sql.SQL(", ").join(sql.Identifier(c.name) for c in [*columns, key]),
        )
        warnings.append(
            f"{kind}: no index starts with ({', '.join(c.name for c in columns)}): finding the "
            f"newest {n} rows of a group scans the table; run `{statement.as_string(conn)}`"
        )
    return Count(kind=kind, n=n, per=tuple(per))


def _protected(conn: psycopg.Connection, relation: catalog.Relation, where: str = "") -> list[str]:
    """Procrastinate's tables and ours, wherever a policy would reach them: as its table (or a
    child's), or through what a DELETE there reaches (partitions, inheritance, cascades)."""
    problems = []
    for table in catalog.protected(conn, [relation.oid]):
        if table.oid == relation.oid:
            subject = f"{where}{table.display} "
        else:
            subject = (
                f"{where}deleting from {relation.display} reaches {table.display} (a partition, "
                f"an inheritance child or an ON DELETE CASCADE / SET NULL foreign key): "
                f"{table.display} "
            )
        if table.procrastinate:
            problems.append(
                subject + "is a Procrastinate table: job retention is configured in [jobs]; todo "
                "and doing jobs are never deleted, and Procrastinate's tables are never a "
                "[[tables]] policy's table or child"
            )
        else:
            problems.append(
                subject + "is one of retention's own tables (the run ledger, the file outbox, "
                "the migrations): our own tables are never a policy's table or child"
            )
    return problems


def _uncastable(
    conn: psycopg.Connection,
    relation: catalog.Relation,
    filters: list[tuple[catalog.Column, tuple[str, ...]]],
    key: str,
) -> list[str]:
    """Filter values that do not cast to their column's type, each named by its key. One
    statement casts them all, as the runs do (text[] to the column's type[]); when it fails, each
    value is cast alone to tell which."""
    if not filters:
        return []
    casts = sql.SQL(", ").join(
        sql.SQL("{}::text[]::{}[]").format(sql.Placeholder(), column.cast) for column, _ in filters
    )
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SELECT {}").format(casts), [list(v) for _, v in filters])
        return []
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
        pass
    problems = []
    for column, values in filters:
        for value in values:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("SELECT %s::text::{}").format(column.cast), [value])
            except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
                reason = (exc.diag.message_primary or str(exc)).strip()
                problems.append(
                    f"{key}.{column.name}: {value!r} is not a valid {column.type_sql} (the type "
                    f"of {relation.display}.{column.name}): {reason}"
                )
    return problems


def _rules(
    relation: catalog.Relation,
    hooks: list[catalog.DeleteHook],
    where: str,
) -> list[str]:
    """DELETE rules of the table itself: a statement deleting through a WITH query (every batch
    does) cannot run with them."""
    return [
        f"{where}{relation.display} has the ON DELETE rule {hook.name!r}: retention deletes with "
        "DELETE ... RETURNING in a WITH query, which rules do not support; keep rows with a "
        "BEFORE DELETE trigger instead (a row it keeps is left alone)"
        for hook in hooks
        if hook.kind == "rule" and hook.oid == relation.oid
    ]


def _droppable(
    conn: psycopg.Connection,
    relation: catalog.Relation,
    hooks: list[catalog.DeleteHook],
    warnings: list[str],
) -> bool:
    """Whether the partitions before the cutoff may be dropped whole: DETACH and DROP fire no
    DELETE trigger (a trigger keeping a row could not keep it), and need the table's owner."""
    triggers = sorted({f"{hook.table}: {hook.name}" for hook in hooks if hook.kind == "trigger"})
    if triggers:
        warnings.append(
            f"{relation.display} has DELETE triggers ({'; '.join(triggers)}), which a partition "
            "drop would not fire: its partitions are pruned row by row, never dropped whole"
        )
        return False
    if not catalog.owns_tree(conn, relation.oid):
        warnings.append(
            f"the role does not own {relation.display} and all its partitions, which DETACH and "
            "DROP need: its partitions are pruned row by row (make the role a member of the "
            "table's owner to drop them whole)"
        )
        return False
    return True


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
    policy: policies.TablePolicy,
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
    configured: list[policies.FileColumn],
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
                    root=file_column.location,
                    source=f"table:{relation.display}.{column.name}",
                )
            )
    return tuple(found)


def _children(
    conn: psycopg.Connection,
    parent: catalog.Relation,
    policy: policies.TablePolicy,
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
        protected = _protected(conn, relation, f"{where}: ")
        if protected:
            problems.extend(protected)
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
                on_delete=fk.on_delete,
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
