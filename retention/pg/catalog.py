"""What the database catalog says about the tables policies name: columns, keys, indexes, foreign
keys and range partitions. Names found here are composed into SQL only as identifiers."""

from __future__ import annotations

import dataclasses
import re

import psycopg
from psycopg import sql

from retention.pg import queries

TIME_TYPES = {"timestamptz": "timestamptz", "timestamp": "timestamp", "date": "date"}
CASCADE = "c"
ON_DELETE = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}
_RANGE_BOUND = re.compile(r"^FOR VALUES FROM \((?P<low>.*)\) TO \((?P<high>.*)\)$", re.DOTALL)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Column:
    name: str
    attnum: int
    type_sql: str
    type_name: str
    category: str

    @property
    def cast(self) -> sql.Composable:
        """The column's type, to cast parameters to (format_type output: valid SQL)."""
        return sql.SQL(self.type_sql)

    @property
    def textual(self) -> bool:
        return self.category == "S"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Relation:
    oid: int
    schema: str
    name: str
    kind: str
    columns: dict[str, Column]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ForeignKey:
    name: str
    child_oid: int
    child: str
    columns: tuple[str, ...]
    referenced: tuple[str, ...]
    on_delete: str

    @property
    def cascades(self) -> bool:
        return self.on_delete == CASCADE


@dataclasses.dataclass(frozen=True, kw_only=True)
class Partition:
    oid: int
    schema: str
    name: str
    upper: str | None
    estimated_rows: int

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return f"{self.schema}.{self.name}"


def relation(conn: psycopg.Connection, name: str) -> Relation | None:
    try:
        row = conn.execute(queries.text("catalog_relation"), {"name": name}).fetchone()
    except (psycopg.errors.InvalidName, psycopg.errors.SyntaxError):
        return None
    if row is None:
        return None
    columns = {
        r[0]: Column(name=r[0], attnum=r[1], type_sql=r[2], type_name=r[3], category=r[4])
        for r in conn.execute(queries.text("catalog_columns"), {"oid": row[0]})
    }
    return Relation(oid=row[0], schema=row[1], name=row[2], kind=row[3], columns=columns)


def unique_keys(conn: psycopg.Connection, oid: int) -> list[tuple[bool, tuple[str, ...]]]:
    """(is primary key, columns) of every valid non-partial unique index."""
    return [
        (row[0], tuple(row[1]))
        for row in conn.execute(queries.text("catalog_unique_keys"), {"oid": oid})
    ]


def has_leading_index(conn: psycopg.Connection, oid: int, column: Column) -> bool:
    row = conn.execute(
        queries.text("catalog_leading_index"), {"oid": oid, "attnum": column.attnum}
    ).fetchone()
    return bool(row and row[0])


def foreign_keys_to(conn: psycopg.Connection, oid: int) -> list[ForeignKey]:
    return [
        ForeignKey(
            name=row[0],
            child_oid=row[1],
            child=f"{row[2]}.{row[3]}",
            columns=tuple(row[4]),
            referenced=tuple(row[5]),
            on_delete=row[6],
        )
        for row in conn.execute(queries.text("catalog_foreign_keys"), {"oid": oid})
    ]


def range_partition_column(conn: psycopg.Connection, oid: int) -> int | None:
    """The attnum a table is range-partitioned on, when it is on exactly one column."""
    row = conn.execute(queries.text("catalog_partitioning"), {"oid": oid}).fetchone()
    if row is None or row[0] != "r" or row[1] != 1:
        return None
    return int(row[2])


def partitions(conn: psycopg.Connection, oid: int) -> list[Partition]:
    found = []
    for row in conn.execute(queries.text("catalog_partitions"), {"oid": oid}):
        found.append(
            Partition(
                oid=row[0],
                schema=row[1],
                name=row[2],
                upper=_upper_bound(row[3]),
                estimated_rows=max(int(row[4]), 0),
            )
        )
    return found


def _upper_bound(bound: str) -> str | None:
    """The exclusive upper bound of a single-column range partition, as text; None for the
    default partition and for MAXVALUE."""
    match = _RANGE_BOUND.match(bound or "")
    if not match:
        return None
    high = match.group("high").strip()
    if not (high.startswith("'") and high.endswith("'")):
        return None
    return high[1:-1].replace("''", "'")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Protected:
    """A table retention never deletes from (see catalog_protected)."""

    oid: int
    display: str
    procrastinate: bool


def protected(conn: psycopg.Connection, oids: list[int]) -> list[Protected]:
    """The protected tables among those a DELETE on `oids` reaches (or that they belong to)."""
    return [
        Protected(oid=row[0], display=f"{row[1]}.{row[2]}", procrastinate=row[3])
        for row in conn.execute(queries.text("catalog_protected"), {"oids": oids})
    ]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeleteHook:
    """A DELETE trigger or rule on a table or on a table below it."""

    kind: str  # "trigger" or "rule"
    oid: int
    table: str
    name: str


def delete_hooks(conn: psycopg.Connection, oid: int) -> list[DeleteHook]:
    return [
        DeleteHook(kind=row[0], oid=row[1], table=f"{row[2]}.{row[3]}", name=row[4])
        for row in conn.execute(queries.text("catalog_delete_hooks"), {"oid": oid})
    ]


def owns_tree(conn: psycopg.Connection, oid: int) -> bool:
    """Whether the current role owns the table and all its partitions (DETACH and DROP)."""
    row = conn.execute(queries.text("catalog_owns_tree"), {"oid": oid}).fetchone()
    return bool(row and row[0])
