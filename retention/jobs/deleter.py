"""Deleting jobs by id with their events, as a batch of the engine does outside the prune's fused
statement (a purge, a dry run's count of events). A held job is never deleted: the statement that
deletes reads the holds itself."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from retention.archive import writer as archive_writer
from retention.holds import conditions as holds
from retention.jobs import paths
from retention.pg import queries

# What a jobs target says of the jobs holds kept: how many, and by which holds.
HeldCount = Callable[[psycopg.Connection], tuple[int, tuple[Mapping[str, Any], ...]]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobDeleter:
    """Deletes jobs with their events. With `unchanged_since`, a job that changed state at or
    after it (retried and finished again while the batch was being selected) is left alone.
    `held` counts, after the walk, the jobs of its target that holds kept."""

    unchanged_since: dt.datetime | None = None
    held: HeldCount | None = None
    archive: archive_writer.Writer | None = None
    # The set-based path (retention.jobs.paths): the batch's transaction has triggers and
    # foreign-key actions off (the segment's settings), and the events go by paths.unlink.
    path: paths.JobsPath | None = None

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        doomed = queries.get("delete_jobs_doomed").format(held=holds.job_held("j"))
        if self.path is not None and self.path.set_based:
            return self._delete_set_based(cur, ids, doomed)
        name = "delete_jobs" if self.archive is None else "delete_jobs_archived"
        statement = queries.get(name).format(doomed=doomed)
        row = cur.execute(statement, {"ids": ids, "since": self.unchanged_since}).fetchone()
        assert row is not None
        counts = {"deleted": row[0], "events": row[1]}
        if self.archive is not None and row[0]:
            # Written and fsynced before the batch's transaction commits (the engine commits
            # after the deleter returns).
            written = self.archive.write(cur.connection, row[2], row[0] + row[1])
            counts.update(archive_writer.counts(written))
        return counts

    def _delete_set_based(
        self, cur: psycopg.Cursor[Any], ids: list[Any], doomed: queries.Statement
    ) -> dict[str, int]:
        line, lines = sql.SQL(""), sql.SQL("NULL::text")
        if self.archive is not None:
            line = sql.SQL(queries.text("prune_jobs_archive_line"))
            lines = sql.SQL("(SELECT string_agg(j.line, E'\\n') FROM jobs j)")
        statement = queries.get("delete_jobs_set_based").format(
            doomed=doomed, line=line, lines=lines
        )
        row = cur.execute(statement, {"ids": ids, "since": self.unchanged_since}).fetchone()
        assert row is not None
        assert self.path is not None
        deleted, gone, jobs_lines = row
        if not deleted:
            return {"deleted": 0, "events": 0}
        events, event_lines = paths.unlink(
            cur.connection, self.path, gone, archived=self.archive is not None
        )
        counts = {"deleted": deleted, "events": events}
        if self.archive is not None:
            text = "\n".join(part for part in (jobs_lines, event_lines) if part)
            written = self.archive.write(cur.connection, text, deleted + events)
            counts.update(archive_writer.counts(written))
        return counts

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        row = cur.execute(queries.text("count_job_events"), {"ids": ids}).fetchone()
        assert row is not None
        if self.archive is not None:
            return {"events": row[0], "archive_rows": len(ids) + row[0]}
        return {"events": row[0]}


def archive_batch(
    archive: archive_writer.Writer,
) -> Callable[[psycopg.Connection, list[dict[str, Any]]], dict[str, int]]:
    """The prune's hook before a batch commits (batches.Fused.before_commit): the lines its
    statement returned (prune_jobs_archive, on one of its rows) written to one archive file."""

    def write(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
        found = next((row for row in rows if row["archive"]), None)
        if found is None:
            return {}
        return archive_writer.counts(archive.write(conn, found["archive"], found["archive_rows"]))

    return write
