"""What a reference to a file is, for every part that deletes files (the outbox drain, the orphan
sweep): a value of a configured file column that names the file.

A value names a file when, made absolute against its column's root and normalised (empty, `.`
and `..` segments resolved, as `normalise` does and the SQL function `retention_normpath` does
in PostgreSQL), it is the file's path in either spelling of the root (as configured, or with its
symlinks resolved), or when its directory is the file's directory under another spelling (a
symlink such as a deploy-style `current/` link, a bind mount): the same device and inode, and
the same name. Every configured file column counts, `delete = false` ones too, whichever policy
it belongs to.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from retention import errors
from retention.config import policies
from retention.config import settings as settings_mod
from retention.pg import catalog, queries

# A path that normalising changes: an empty, `.` or `..` segment, or a trailing slash.
_UNUSUAL = re.compile(r"//|/\.\.?(/|$)|/$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reference:
    """A configured file column: its table, column and storage root (as configured and real)."""

    table: str
    column: str
    root: Path
    real_root: Path
    delete: bool
    timestamp: str | None = None
    storage: bool = False

    def overlaps(self, root: Path, real_root: Path) -> bool:
        return any(
            a.is_relative_to(b) or b.is_relative_to(a)
            for a in (self.root, self.real_root)
            for b in (root, real_root)
        )

    def spellings(self, path: str) -> list[str]:
        """The values this column may store for the absolute normalised `path`: relative to
        the column's root and absolute, in either spelling of the root."""
        found = [path]
        for base in dict.fromkeys((str(self.root), str(self.real_root))):
            prefix = normalise(base, ".").rstrip("/") + "/"
            if path.startswith(prefix):
                rel = path[len(prefix) :]
                found += [rel, prefix + rel]
        return list(dict.fromkeys(found))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Column:
    """A file column found in the database, and how a batch asks it again before deleting: by an
    index on the column, else among recent rows by an index on the policy's timestamp, else not
    (the listing's match is then the only check)."""

    ref: Reference
    table: sql.Identifier
    recheck: queries.Statement | None


def references(settings: settings_mod.Settings) -> list[Reference]:
    """Every file column of every table policy and child table, enabled or not."""
    found: list[Reference] = []
    for policy in settings.tables:
        owners: list[tuple[str, str | None, list[policies.FileColumn]]] = [
            (policy.table, policy.timestamp, policy.files)
        ]
        owners += [(child.table, None, child.files) for child in policy.children]
        for table, timestamp, columns in owners:
            for column in columns:
                root = Path(column.location)
                found.append(
                    Reference(
                        table=table,
                        column=column.column,
                        root=root,
                        real_root=root if column.storage else Path(os.path.realpath(root)),
                        delete=column.delete,
                        timestamp=timestamp,
                        storage=column.storage is not None,
                    )
                )
    return found


def resolve(conn: psycopg.Connection, refs: list[Reference]) -> list[Column]:
    """The columns in the database; ConfigError when a table or column is missing."""
    found: list[Column] = []
    for ref in refs:
        relation = catalog.relation(conn, ref.table)
        if relation is None or ref.column not in relation.columns:
            what = f"table {ref.table!r}" if relation is None else f"column {ref.column!r}"
            raise errors.ConfigError(
                f"{what} of the file column {ref.table}.{ref.column} does not exist: fix the "
                "[[tables]] policy (a file is deleted only when no such column references it)"
            )
        column = relation.columns[ref.column]
        stamp = relation.columns.get(ref.timestamp) if ref.timestamp else None
        recheck: queries.Statement | None = None
        if catalog.has_leading_index(conn, relation.oid, column):
            recheck = queries.get("references_recheck").format(
                table=relation.ident, column=sql.Identifier(ref.column)
            )
        elif stamp is not None and catalog.has_leading_index(conn, relation.oid, stamp):
            recheck = queries.get("references_recheck_recent").format(
                table=relation.ident,
                column=sql.Identifier(ref.column),
                timestamp=sql.Identifier(stamp.name),
            )
        found.append(Column(ref=ref, table=relation.ident, recheck=recheck))
    return found


def normalise(base: str, value: str) -> str:
    """`value` made absolute against `base` (when relative) and normalised lexically: empty and
    `.` segments dropped, `..` pops a segment (never above `/`). The same as the SQL function
    retention_normpath (pg/sql/references.sql)."""
    path = value if value.startswith("/") else f"{base}/{value}"
    if not _UNUSUAL.search(path):
        return path
    kept: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if kept:
                kept.pop()
            continue
        kept.append(part)
    return "/" + "/".join(kept)


def _name(path: str) -> str:
    return path.rpartition("/")[2]


class Named:
    """The values of the configured file columns that end in one of a set of names, read once
    (one scan of each column), normalised: what the drain compares its entries with."""

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        self.paths: set[str] = set()
        self.directories: dict[str, set[str]] = {}
        self._identities: dict[str, tuple[int, int] | None] = {}

    def load(self, conn: psycopg.Connection, query: str, **params: Any) -> None:
        """Read the values the named query selects (a query with `{table}` and `{column}`),
        column by column."""
        for column in self.columns:
            statement = queries.get(query).format(
                table=column.table, column=sql.Identifier(column.ref.column)
            )
            with conn.cursor() as cur:
                cur.execute(statement, params)
                for (value,) in cur:
                    self.add(normalise(str(column.ref.root), value))

    def add(self, path: str) -> None:
        self.paths.add(path)
        directory, _, name = path.rpartition("/")
        self.directories.setdefault(name, set()).add(directory or "/")

    def could_name(self, name: str) -> bool:
        """Whether some value ends in this last segment (else none names the file)."""
        return name in self.directories

    def names(self, path: str, identity: tuple[int, int] | None) -> bool:
        """Whether a value names the file at the absolute normalised `path`, whose directory has
        the (device, inode) `identity` (None: compare paths only)."""
        if path in self.paths:
            return True
        if identity is None:
            return False
        return any(
            self._identity(directory) == identity
            for directory in self.directories.get(_name(path), ())
        )

    def _identity(self, directory: str) -> tuple[int, int] | None:
        """The (device, inode) of the directory a stored path names now (symlinks followed)."""
        if directory not in self._identities:
            try:
                info = os.stat(directory)
            except (OSError, ValueError):
                self._identities[directory] = None
            else:
                self._identities[directory] = (info.st_dev, info.st_ino)
        return self._identities[directory]


def recheck(
    cur: psycopg.Cursor[Any], columns: Iterable[Column], paths: Iterable[str], since: Any
) -> set[str]:
    """Which of these absolute normalised paths a row references now in a spelling an index
    finds (rows written since a listing or a load), for the columns that have such an index."""
    wanted = list(paths)
    keep: set[str] = set()
    for column in columns:
        if column.recheck is None:
            continue
        forms: dict[str, str] = {}
        for path in wanted:
            for form in column.ref.spellings(path):
                forms[form] = path
        if not forms:
            continue
        for (value,) in cur.execute(column.recheck, {"forms": list(forms), "since": since}):
            keep.add(forms[value])
    return keep
