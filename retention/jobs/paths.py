"""Which way a jobs batch deletes.

The normal path deletes the batch's jobs and lets Procrastinate's schema do the rest row by row:
its BEFORE DELETE trigger unlinks each job's periodic defers, the events' ON DELETE CASCADE
deletes each job's events, and the periodic defers' foreign key checks each job. Most of a
prune's time goes there.

The set-based path turns that row-by-row work off for the batch's transaction only
(`SET LOCAL session_replication_role = replica`) and does it in bulk: the same statement deletes
the same jobs (the same guards: final statuses, no later state change, holds, locks), then one
statement (`set_based_unlink`, with its own snapshot) unlinks their periodic defers and deletes
their events. It is taken only when:

- the role may set session_replication_role (a superuser, or on PostgreSQL 15 and later a role
  granted SET ON PARAMETER session_replication_role), and
- the catalog shows exactly the triggers, foreign keys, rules and inheritance that the installed
  Procrastinate version defines on procrastinate_jobs, procrastinate_events and
  procrastinate_periodic_defers (`schemas.KNOWN`): any other (an application's audit trigger,
  an application table with a foreign key to the jobs) would be skipped too, so its presence
  means the normal path.

Every set-based batch checks the catalog again after its writes, inside its transaction
(`check_digest`): a trigger, rule or foreign key added since the run chose its path is either
seen there (the batch is rolled back, the run fails and says why, and the next run takes the
normal path) or waits for the batch's locks and comes after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable
from typing import Any, Literal

import procrastinate
import psycopg
from psycopg import sql

from retention import errors
from retention.archive import writer as archive_writer
from retention.jobs import schemas
from retention.pg import queries

PathName = Literal["normal", "set-based"]
NORMAL: PathName = "normal"
SET_BASED: PathName = "set-based"
# What the set-based path sets for each batch's transaction (SET LOCAL): triggers and
# foreign-key actions off.
SET_BASED_SETTINGS = (("session_replication_role", "replica"),)
GRANT = "GRANT SET ON PARAMETER session_replication_role TO <role>"
_SHOWN = 3


class CatalogChanged(errors.DatabaseError):
    """The triggers, rules or foreign keys of Procrastinate's tables changed during a run that
    had chosen the set-based path: the batch that saw it was rolled back."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobsPath:
    """The path a run's jobs batches take, and why. `digest` is the catalog digest that a
    set-based batch checks (None on the normal path)."""

    name: PathName
    reason: str
    digest: str | None = None

    @property
    def set_based(self) -> bool:
        return self.name == SET_BASED

    def to_json(self) -> dict[str, str]:
        return {"path": self.name, "path_reason": self.reason}


def digest(lines: Iterable[str]) -> str:
    """The md5 of the lines sorted by code point (UTF-8 byte order) and joined by newlines: what
    procrastinate_catalog_digest computes in SQL."""
    return hashlib.md5("\n".join(sorted(lines)).encode("utf-8")).hexdigest()


def catalog(conn: psycopg.Connection) -> set[str]:
    """The catalog lines of Procrastinate's tables in this database (procrastinate_catalog)."""
    return {row[0] for row in conn.execute(queries.text("procrastinate_catalog"))}


def may_set_replication_role(conn: psycopg.Connection) -> bool:
    granted = (
        sql.SQL("has_parameter_privilege('session_replication_role', 'SET')")
        if conn.info.server_version >= 150000
        else sql.SQL("false")
    )
    row = conn.execute(queries.get("may_set_replication_role").format(granted=granted)).fetchone()
    return bool(row and row[0])


def choose(conn: psycopg.Connection, setting: str, version: str | None = None) -> JobsPath:
    """The path for this run: `setting` is the settings' jobs_path ("auto" or "normal");
    `version` the Procrastinate version whose schema is expected (default: the installed
    one)."""
    if setting == NORMAL:
        return JobsPath(name=NORMAL, reason='jobs_path = "normal" in the settings')
    version = version or procrastinate.__version__
    if not may_set_replication_role(conn):
        return JobsPath(
            name=NORMAL,
            reason="the role may not set session_replication_role (the set-based path needs "
            f"it: run `{GRANT};` on PostgreSQL 15 or later, or run as a superuser)",
        )
    expected = schemas.KNOWN.get(schemas.release(version))
    if expected is None:
        known = ", ".join(sorted(schemas.KNOWN))
        return JobsPath(
            name=NORMAL,
            reason=f"Procrastinate {version} is not a version whose schema the set-based path "
            f"knows ({known})",
        )
    found = catalog(conn)
    if found != set(expected):
        return JobsPath(
            name=NORMAL,
            reason=f"the catalog differs from the schema Procrastinate {version} defines "
            f"({_differences(found, set(expected))}), so the set-based path would skip work "
            "that the database expects",
        )
    return JobsPath(
        name=SET_BASED,
        reason="the role may set session_replication_role and Procrastinate's tables have "
        f"exactly the triggers and foreign keys Procrastinate {version} defines",
        digest=digest(expected),
    )


def _differences(found: set[str], expected: set[str]) -> str:
    parts = []
    for label, lines in (("not in it", found - expected), ("missing", expected - found)):
        if lines:
            shown = [_short(line) for line in sorted(lines)[:_SHOWN]]
            more = f" and {len(lines) - _SHOWN} more" if len(lines) > _SHOWN else ""
            parts.append(f"{label}: {'; '.join(shown)}{more}")
    return "; ".join(parts)


def _short(line: str) -> str:
    """A catalog line named by its kind, table and name (a trigger's definition left out)."""
    words = line.split(" ")
    if words[0] == "trigger":
        return " ".join(words[:3])
    if words[0] == "function":
        return f"function {words[1]} (its body)"
    return line if len(line) <= 120 else line[:117] + "..."


def check_digest(conn: psycopg.Connection, path: JobsPath) -> None:
    """Inside a set-based batch's transaction, after its writes: the catalog is still the one
    the path was chosen by; otherwise CatalogChanged (and the caller's transaction rolls back)."""
    statement = queries.get("procrastinate_catalog_digest").format(
        catalog=sql.SQL(queries.text("procrastinate_catalog"))
    )
    row = conn.execute(statement).fetchone()
    if row is None or row[0] != path.digest:
        raise CatalogChanged(
            "the triggers, rules or foreign keys of Procrastinate's tables changed during this "
            "run (it had chosen the set-based jobs path): the batch was rolled back, nothing of "
            "it was deleted; the next run chooses its path again"
        )


def unlink(
    conn: psycopg.Connection, path: JobsPath, ids: str, *, archived: bool
) -> tuple[int, str | None]:
    """The set-based path's second statement for the jobs a batch deleted (`ids`: the text of
    an array), then the catalog check: how many events went, and with `archived` their archive
    lines. Inside the batch's transaction."""
    line = sql.SQL(queries.text("set_based_archive_line")) if archived else sql.SQL("1")
    lines = (
        sql.SQL("(SELECT string_agg(e.line, E'\\n') FROM events e)")
        if archived
        else sql.SQL("NULL::text")
    )
    statement = queries.get("set_based_unlink").format(line=line, lines=lines)
    unlinked = conn.execute(statement, {"ids": ids})
    check_digest(conn, path)
    row = unlinked.fetchone()
    assert row is not None
    return int(row[0]), row[2]


def finish_batch(
    path: JobsPath, archive: archive_writer.Writer | None
) -> Callable[[psycopg.Connection, list[dict[str, Any]]], dict[str, int]]:
    """The set-based prune's hook before a batch commits (batches.Fused.before_commit): the
    periodic defers and events of the jobs the fused statement deleted (its `gone` column),
    then the catalog check (`unlink`); with `archive`, the jobs' lines (its `archive` column)
    and the events' lines written to one archive file."""

    def finish(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
        first = rows[0] if rows else None
        ids = first["gone"] if first is not None else None
        if not ids:
            return {}
        events, event_lines = unlink(conn, path, ids, archived=archive is not None)
        if archive is None:
            return {}
        jobs_lines = next((r["archive"] for r in rows if r["archive"]), None)
        text = "\n".join(part for part in (jobs_lines, event_lines) if part)
        found = next((r["archive_rows"] for r in rows if r["archive_rows"] is not None), 0)
        return archive_writer.counts(archive.write(conn, text, found + events))

    return finish
