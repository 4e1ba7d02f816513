"""The run ledger: every run, dry run, purge and sweep is a row of `retention_runs`."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from retention import errors
from retention.engine import results
from retention.pg import queries

logger = logging.getLogger(__name__)

TRIGGERS = ("periodic", "deferred", "cli")
PROGRESS_INTERVAL_SECONDS = 1.0


@dataclasses.dataclass(kw_only=True)
class Run:
    """A run in progress. Its connection is its own, in autocommit, so progress is visible at once
    and a run killed hard leaves a session that disappears (then the run is abandoned)."""

    conn: psycopg.Connection
    id: int
    started_at: dt.datetime
    holds_lock: bool = False
    _last_write: float = 0.0
    _waiting: str | None = None

    def progress(
        self,
        stage: str,
        fraction: float | None,
        summary: Callable[[], results.RunSummary],
        *,
        force: bool = False,
    ) -> None:
        """Record how far the run is, at most once a PROGRESS_INTERVAL_SECONDS unless forced or
        the run starts or stops waiting (its stage then reads e.g. `jobs: waiting for replica
        lag`); `summary` makes the partial summary."""
        now = time.monotonic()
        partial = summary()
        waiting = partial.waiting
        changed = waiting != self._waiting
        if not (force or changed) and now - self._last_write < PROGRESS_INTERVAL_SECONDS:
            return
        self._last_write = now
        self._waiting = waiting
        self.conn.execute(
            queries.text("progress_run"),
            {
                "id": self.id,
                "stage": stage if waiting is None else f"{stage}: waiting for {waiting}",
                "progress": None if fraction is None else round(100 * fraction, 1),
                "summary": Jsonb(partial.to_json()),
            },
        )

    def finish(self, summary: results.RunSummary) -> None:
        self.conn.execute(
            queries.text("finish_run"),
            {
                "id": self.id,
                "status": summary.status,
                "progress": 100.0 if summary.status == "succeeded" else None,
                "summary": Jsonb(summary.to_json()),
                "error": summary.error,
            },
        )
        if self.holds_lock:
            self.conn.execute(queries.text("run_unlock"))
            self.holds_lock = False


def start(
    conn: psycopg.Connection,
    *,
    kind: str,
    trigger: str,
    dry_run: bool,
    settings: dict[str, Any],
    exclusive: bool,
) -> Run:
    """Record a new run. With exclusive=True, refuse when another exclusive run holds the lock."""
    if trigger not in TRIGGERS:
        raise ValueError(f"unknown trigger {trigger!r}")
    abandoned = abandon_dead(conn)
    holds_lock = False
    if exclusive:
        row = conn.execute(queries.text("try_run_lock")).fetchone()
        if not (row and row[0]):
            others = conn.execute(queries.text("running_runs")).fetchall()
            which = (
                ", ".join(
                    f"#{r[0]} ({r[1]}, {r[2]}, started {r[3]:%Y-%m-%d %H:%M:%S})" for r in others
                )
                or "another process"
            )
            raise errors.RunFailed(
                f"another retention run is in progress: {which}; wait for it to finish "
                "(see `retention status`)"
            )
        holds_lock = True
    row = conn.execute(
        queries.text("start_run"),
        {
            "kind": kind,
            "trigger": trigger,
            "dry_run": dry_run,
            "settings": Jsonb(settings),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        },
    ).fetchone()
    assert row is not None
    if abandoned:
        logger.warning(
            "marked %d run(s) as abandoned: %s",
            len(abandoned),
            abandoned,
            extra={"action": "runs_abandoned", "run_ids": abandoned},
        )
    return Run(conn=conn, id=row[0], started_at=row[1], holds_lock=holds_lock)


def abandon_dead(conn: psycopg.Connection) -> list[int]:
    return [row[0] for row in conn.execute(queries.text("abandon_dead_runs"))]


def recent(conn: psycopg.Connection, limit: int = 10) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return list(cur.execute(queries.text("recent_runs"), {"limit": limit}))


def get(conn: psycopg.Connection, run_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(queries.text("get_run"), {"id": run_id}).fetchone()
