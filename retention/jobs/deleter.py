"""Deleting jobs by id with their events, as a batch of the engine does outside the prune's fused
statement (a purge, a dry run's count of events)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import psycopg

from retention.pg import queries


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobDeleter:
    """Deletes jobs with their events. With `unchanged_since`, a job that changed state at or
    after it (retried and finished again while the batch was being selected) is left alone."""

    unchanged_since: dt.datetime | None = None

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        row = cur.execute(
            queries.text("delete_jobs"), {"ids": ids, "since": self.unchanged_since}
        ).fetchone()
        assert row is not None
        return {"deleted": row[0], "events": row[1]}

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        row = cur.execute(queries.text("count_job_events"), {"ids": ids}).fetchone()
        assert row is not None
        return {"events": row[0]}
