"""Named SQL queries, kept in `retention/pg/sql/*.sql` (and the demo's in `retention/demo/`) and
split on `-- name: <query> --` headers."""

from __future__ import annotations

import functools
import re
from importlib import resources

from psycopg import sql

# Where named statements live: the package's own, and the demo application's.
SOURCES = (("retention.pg", "sql"), ("retention.demo", ""))
_HEADER = re.compile(r"^-- name: (\w+) --\s*$", re.MULTILINE)


@functools.cache
def _load() -> dict[str, str]:
    found: dict[str, str] = {}
    entries = [
        entry
        for package, folder in SOURCES
        for entry in (
            resources.files(package).joinpath(folder) if folder else resources.files(package)
        ).iterdir()
        if entry.name.endswith(".sql")
    ]
    for entry in sorted(entries, key=str):
        parts = _HEADER.split(entry.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice")
            found[name] = body.strip()
    return found


# What psycopg executes: a named statement, or one composed from it with `.format()`.
Statement = sql.SQL | sql.Composed


def text(name: str) -> str:
    return _load()[name]


def get(name: str) -> sql.SQL:
    """The query as psycopg SQL: identifiers and literals go in through `.format()`."""
    return sql.SQL(text(name))
