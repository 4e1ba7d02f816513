"""Putting archived rows back: jobs with their events (same ids), table rows before their
children's. A row whose primary key is already in its table is refused (left as it is), so a
file restored twice, or a row archived twice (see writer: at-least-once), goes in once."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from retention import errors
from retention.archive import store
from retention.pg import queries


@dataclasses.dataclass(frozen=True, kw_only=True)
class Restored:
    """What a restore did (or, in a dry run, would do), per table."""

    inserted: dict[str, int]
    refused: dict[str, int]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return {"inserted": self.inserted, "refused": self.refused, "dry_run": self.dry_run}


@dataclasses.dataclass(frozen=True)
class _Table:
    ident: sql.Identifier
    columns: tuple[str, ...]
    key: tuple[str, ...]


def _table(conn: psycopg.Connection, parts: Sequence[str]) -> _Table:
    ident = sql.Identifier(*parts)
    try:
        found = conn.execute(
            queries.text("table_columns_for_restore"), {"table": ident.as_string(conn)}
        ).fetchall()
    except psycopg.errors.UndefinedTable:
        raise errors.ConfigError(
            f"archived rows name table {'.'.join(parts)!r}, which does not exist: create it "
            "(or migrate) before restoring"
        ) from None
    columns = tuple(name for name, _ in found)
    key = tuple(name for name, in_key in found if in_key) or columns
    return _Table(ident=ident, columns=columns, key=key)


def _insert(table: _Table) -> sql.Composed:
    """Insert the row given as JSON unless a row with its key exists; returns 1 when inserted."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in table.columns)
    same = sql.SQL(" AND ").join(
        sql.SQL("e.{0} = r.{0}").format(sql.Identifier(c)) for c in table.key
    )
    return sql.SQL(
        "INSERT INTO {t} ({cols}) OVERRIDING SYSTEM VALUE "
        "SELECT {rcols} FROM jsonb_populate_record(NULL::{t}, %(row)s) AS r "
        "WHERE NOT EXISTS (SELECT 1 FROM {t} AS e WHERE {same})"
    ).format(
        t=table.ident,
        cols=cols,
        rcols=sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(c)) for c in table.columns),
        same=same,
    )


def restore(conn: psycopg.Connection, paths: Iterable[Path], *, dry_run: bool = False) -> Restored:
    """Re-insert the rows of the archive files `paths`, in one transaction, parents first (each
    file's order), deduped by primary key. A dry run rolls the transaction back."""
    inserted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    tables: dict[tuple[str, ...], tuple[_Table, sql.Composed]] = {}
    seen: set[tuple[tuple[str, ...], tuple[Any, ...]]] = set()
    with conn.transaction() as transaction:
        for path in paths:
            for row in store.rows(path):
                if row.table not in tables:
                    table = _table(conn, row.table)
                    tables[row.table] = (table, _insert(table))
                table, statement = tables[row.table]
                name = ".".join(row.table)
                key = (row.table, tuple(str(row.values.get(c)) for c in table.key))
                if key in seen:
                    continue
                seen.add(key)
                cur = conn.execute(statement, {"row": Jsonb(row.values)})
                if cur.rowcount:
                    inserted[name] += 1
                else:
                    refused[name] += 1
        if dry_run:
            raise psycopg.Rollback(transaction)
    return Restored(inserted=dict(inserted), refused=dict(refused), dry_run=dry_run)
