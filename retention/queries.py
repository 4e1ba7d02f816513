"""Named SQL queries, kept in `retention/sql/*.sql` and split on `-- name: <query> --` headers."""

from __future__ import annotations

import functools
import re
from importlib import resources

from psycopg import sql

_HEADER = re.compile(r"^-- name: (\w+) --\s*$", re.MULTILINE)


@functools.cache
def _load() -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in sorted(resources.files("retention").joinpath("sql").iterdir(), key=str):
        if not entry.name.endswith(".sql"):
            continue
        parts = _HEADER.split(entry.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise RuntimeError(f"query {name!r} is defined twice")
            found[name] = body.strip()
    return found


def text(name: str) -> str:
    return _load()[name]


def get(name: str) -> sql.SQL:
    """The query as psycopg SQL: identifiers and literals go in through `.format()`."""
    return sql.SQL(text(name))  # type: ignore[arg-type]
