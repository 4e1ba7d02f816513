"""Optional maintenance after a run that deleted a large share of the jobs ([maintenance], off
by default): `VACUUM (ANALYZE)` of procrastinate_jobs and procrastinate_events, then
`REINDEX INDEX CONCURRENTLY` of their indexes whose estimated bloat reaches
`reindex_bloat_ratio`. Both run on the run's autocommit connection, after the stages, outside
any batch transaction; a role that owns neither table is told why nothing ran.

The bloat estimate: pgstattuple's `pgstatindex` (the free share of a btree's leaf pages) when the
extension is installed, else the catalog (`pg_class.reltuples` and `relpages`, column widths from
`pg_attribute` and `pg_stats`, after the ANALYZE). Which one was used is in the result.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from psycopg import rows, sql

from retention.pg import queries

if TYPE_CHECKING:
    import psycopg

    from retention.config import settings as settings_mod
    from retention.engine import results

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Action:
    """One statement: run (done) or, in a dry run, what would run."""

    statement: str
    target: str
    done: bool
    seconds: float | None = None
    bytes_before: int
    bytes_after: int | None = None
    bloat: float | None = None

    def to_json(self) -> results.JSON:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Result:
    """What the maintenance did after the run, or why it did nothing (`skipped`)."""

    deleted_share: float
    estimate: str | None = None
    skipped: str | None = None
    actions: tuple[Action, ...] = ()
    seconds: float = 0.0

    def to_json(self) -> results.JSON:
        return {
            "deleted_share": round(self.deleted_share, 4),
            "estimate": self.estimate,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "actions": [action.to_json() for action in self.actions],
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Table:
    name: str
    schema: str
    owner: str
    may: bool
    bytes: int


def after_run(
    conn: psycopg.Connection,
    settings: settings_mod.Settings,
    *,
    deleted: int,
    dry_run: bool,
) -> Result | None:
    """The maintenance after a run that deleted `deleted` jobs (or, dry, would have); None when
    [maintenance] asks for nothing."""
    policy = settings.maintenance
    if not (policy.reindex or policy.vacuum):
        return None
    started = time.monotonic()
    row = conn.execute(queries.text("maintenance_jobs_left")).fetchone()
    total = int(row[0]) if row else 0
    if not dry_run:
        total += deleted
    share = deleted / total if total else 0.0
    if share < policy.min_deleted_share:
        return Result(
            deleted_share=share,
            skipped=f"the run deleted {share:.1%} of the jobs, under [maintenance] "
            f"min_deleted_share = {policy.min_deleted_share:g}: no VACUUM or REINDEX needed",
        )
    tables = _tables(conn)
    refused = [t for t in tables if not t.may]
    if refused:
        role = conn.execute("SELECT current_user").fetchone()
        who = role[0] if role else "this role"
        names = ", ".join(f"{t.name} (owner {t.owner})" for t in refused)
        message = (
            f"maintenance skipped: the role {who} does not own {names}; VACUUM and REINDEX need "
            "the table's owner or a superuser: run retention as the owner, or set [maintenance] "
            "vacuum = false and reindex = false"
        )
        logger.warning(message, extra={"action": "maintenance_skipped"})
        return Result(deleted_share=share, skipped=message, seconds=time.monotonic() - started)
    actions: list[Action] = []
    if policy.vacuum:
        for table in tables:
            actions.append(_vacuum(conn, table, dry_run))
    elif policy.reindex and not dry_run:
        for table in tables:  # the catalog estimate reads reltuples
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table.schema, table.name)))
    estimate = None
    if policy.reindex:
        row = conn.execute(queries.text("maintenance_has_pgstattuple")).fetchone()
        estimate = "pgstatindex" if row and row[0] else "pg_class"
        query = queries.text(
            f"maintenance_indexes_{'pgstattuple' if row and row[0] else 'estimate'}"
        )
        for table in tables:
            qualified = f"{table.schema}.{table.name}"
            for name, size, bloat in conn.execute(query, {"table": qualified}).fetchall():
                if float(bloat) >= policy.reindex_bloat_ratio:
                    actions.append(
                        _reindex(conn, table.schema, name, int(size), float(bloat), dry_run)
                    )
    return Result(
        deleted_share=share,
        estimate=estimate,
        actions=tuple(actions),
        seconds=time.monotonic() - started,
    )


def _tables(conn: psycopg.Connection) -> list[_Table]:
    with conn.cursor(row_factory=rows.class_row(_Table)) as cur:
        return cur.execute(queries.text("maintenance_tables")).fetchall()


def _size(conn: psycopg.Connection, function: str, schema: str, name: str) -> int:
    statement = sql.SQL("SELECT {}(%s::regclass)").format(sql.Identifier(function))
    row = conn.execute(statement, (sql.Identifier(schema, name).as_string(conn),)).fetchone()
    return int(row[0]) if row else 0


def _vacuum(conn: psycopg.Connection, table: _Table, dry_run: bool) -> Action:
    target = sql.Identifier(table.schema, table.name)
    statement = sql.SQL("VACUUM (ANALYZE) {}").format(target)
    shown = statement.as_string(conn)
    if dry_run:
        return Action(statement=shown, target=table.name, done=False, bytes_before=table.bytes)
    started = time.monotonic()
    conn.execute(statement)
    return Action(
        statement=shown,
        target=table.name,
        done=True,
        seconds=round(time.monotonic() - started, 3),
        bytes_before=table.bytes,
        bytes_after=_size(conn, "pg_total_relation_size", table.schema, table.name),
    )


def _reindex(
    conn: psycopg.Connection, schema: str, name: str, size: int, bloat: float, dry_run: bool
) -> Action:
    statement = sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(schema, name))
    shown = statement.as_string(conn)
    if dry_run:
        return Action(
            statement=shown, target=name, done=False, bytes_before=size, bloat=round(bloat, 4)
        )
    started = time.monotonic()
    conn.execute(statement)
    return Action(
        statement=shown,
        target=name,
        done=True,
        seconds=round(time.monotonic() - started, 3),
        bytes_before=size,
        bytes_after=_size(conn, "pg_relation_size", schema, name),
        bloat=round(bloat, 4),
    )
