"""The conditions every delete statement puts its rows through: held jobs, held rows of a
policy's table. Composed from named SQL (`retention/pg/sql/holds.sql`) with identifiers from the
catalog, and read by the deleting statement itself, never from a list read before it."""

from __future__ import annotations

from psycopg import sql

from retention.pg import catalog, queries

# The kinds of column a hold's filter may name: those with an equality PostgreSQL can compare
# values cast from text with (numbers, text, dates and times, booleans, enums, intervals,
# network addresses, bit strings), and uuid.
FILTER_CATEGORIES = frozenset("NSDBETIV")
FILTER_TYPES = frozenset({"uuid"})


def _fragment(name: str) -> sql.SQL:
    """A named condition on one line, without its comment lines: it is composed into the
    middle of lines of other statements (and of their comments, which name their placeholders),
    where a comment would swallow the rest of a line."""
    text = queries.text(name)
    lines = (line.strip() for line in text.splitlines() if not line.lstrip().startswith("--"))
    return sql.SQL(" ".join(line for line in lines if line))


def active() -> sql.Composable:
    return _fragment("hold_active")


def glob_like(glob: sql.Composable) -> sql.Composable:
    """A LIKE pattern every name the glob `glob` (an expression) matches is LIKE."""
    return _fragment("glob_like").format(glob=glob)


def job_held(alias: str = "j") -> sql.Composable:
    """Whether the job `alias` is held now."""
    return _fragment("job_held").format(
        job=sql.Identifier(alias),
        active=active(),
        queue_like=glob_like(sql.SQL("h.queue_glob")),
        task_like=glob_like(sql.SQL("h.task_glob")),
    )


def filterable(column: catalog.Column) -> bool:
    return column.category in FILTER_CATEGORIES or column.type_name in FILTER_TYPES


def _filter(relation: catalog.Relation, row: sql.Identifier) -> sql.Composable:
    """Every column of a hold's filter `h.filter` ({"column": ["value", ...]}) matches the row:
    one term per filterable column of the table (a column the filter does not name passes; a
    name that is no such column is ignored, which only widens the hold)."""
    terms = [
        sql.SQL(
            "(NOT h.filter ? {name} OR {row}.{column} = ANY(ARRAY(SELECT "
            "jsonb_array_elements_text(h.filter -> {name}))::{cast}[]))"
        ).format(
            name=sql.Literal(column.name),
            row=row,
            column=sql.Identifier(column.name),
            cast=column.cast,
        )
        for column in relation.columns.values()
        if filterable(column)
    ]
    return sql.SQL(" AND ").join(terms) if terms else sql.SQL("true")


def hold_matches_row(
    relation: catalog.Relation, key: catalog.Column, alias: str = "t"
) -> sql.Composable:
    """Whether the active hold `h` names the row `alias` of `relation`."""
    row = sql.Identifier(alias)
    return _fragment("hold_matches_row").format(
        table=sql.Literal(relation.display),
        active=active(),
        row=row,
        key=sql.Identifier(key.name),
        key_type=key.cast,
        filter=_filter(relation, row),
    )


def row_held(relation: catalog.Relation, key: catalog.Column, alias: str = "t") -> sql.Composable:
    """Whether the row `alias` of `relation` is held now."""
    return _fragment("row_held").format(matches=hold_matches_row(relation, key, alias))


def partition_held(
    relation: catalog.Relation, key: catalog.Column, partition: sql.Composable
) -> queries.Statement:
    """A statement: whether the partition holds a row a hold names."""
    return queries.get("partition_held").format(
        table=sql.Literal(relation.display),
        active=active(),
        partition=partition,
        matches=hold_matches_row(relation, key),
    )


def held_rows_count(
    relation: catalog.Relation, key: catalog.Column, eligible: sql.Composable
) -> queries.Statement:
    """A statement: how many rows matching `eligible` (on alias t) a hold keeps."""
    return queries.get("held_rows_count").format(
        key=sql.Identifier(key.name),
        relation=relation.ident,
        matches=hold_matches_row(relation, key),
        eligible=eligible,
        table=sql.Literal(relation.display),
    )


def holds_on_table(relation: catalog.Relation) -> tuple[queries.Statement, dict[str, str]]:
    return queries.get("holds_on_table").format(active=active()), {"table": relation.display}


def holds_on_jobs() -> queries.Statement:
    return queries.get("holds_on_jobs").format(active=active())
