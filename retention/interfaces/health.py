"""The health rule of `retention status --check` and of the worker's `/healthz`: healthy when the
last retention run did not fail and one succeeded within two periods of the schedule.

A run is late when the second tick of `settings.schedule` after the start of the last run that
succeeded (or, before any run, after retention was installed: its first migration) has passed by
more than `max_run_seconds`, the time the run started at that tick has to finish. One missed tick
is tolerated; two are not. Runs are those of kind `run` (`retention run`, `retention:run`,
`retention:prune_jobs`), dry runs aside; an aborted or abandoned run is not a failure, but it is
not a success either. Every time is read on the database's clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import psycopg
from croniter import croniter
from psycopg.rows import class_row

from retention.config import dsn
from retention.config import settings as settings_mod
from retention.pg import queries

# The longest error text a reason quotes (the whole one is in `retention status`).
ERROR_CHARS = 300


@dataclasses.dataclass(frozen=True, kw_only=True)
class Health:
    """The verdict, and one line saying why."""

    healthy: bool
    reason: str

    def line(self) -> str:
        """`healthy: <reason>` or `unhealthy: <reason>`, as the CLI and /healthz print it."""
        return f"{'healthy' if self.healthy else 'unhealthy'}: {self.reason}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Facts:
    """What the rule reads from the ledger (the `health_facts` query)."""

    checked_at: dt.datetime
    installed_at: dt.datetime | None
    last_id: int | None
    last_status: str | None
    last_finished_at: dt.datetime | None
    last_error: str | None
    ok_id: int | None
    ok_started_at: dt.datetime | None
    ok_finished_at: dt.datetime | None


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "an unknown time"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _one_line(error: str | None) -> str:
    text = " ".join(dsn.redact_text(error or "no error recorded").split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def ticks_after(schedule: str, moment: dt.datetime, count: int) -> list[dt.datetime]:
    """The next `count` ticks of the cron `schedule` after `moment`, in UTC (as Procrastinate
    reads its periodic schedules)."""
    cron = croniter(schedule, moment.astimezone(dt.UTC))
    return [cron.get_next(dt.datetime) for _ in range(count)]


def due_by(schedule: str, since: dt.datetime, max_run_seconds: float) -> dt.datetime:
    """When a run is late: the second tick after `since`, plus the time a run has to finish."""
    return ticks_after(schedule, since, 2)[-1] + dt.timedelta(seconds=max_run_seconds)


def judge(facts: Facts, *, schedule: str, max_run_seconds: float) -> Health:
    """The rule itself, on facts already read."""
    now = facts.checked_at
    if facts.last_status == "failed":
        return Health(
            healthy=False,
            reason=f"the last run #{facts.last_id} failed at {_when(facts.last_finished_at)}: "
            f"{_one_line(facts.last_error)} (see `retention status`)",
        )
    since = facts.ok_started_at or facts.installed_at or now
    deadline = due_by(schedule, since, max_run_seconds)
    (next_tick,) = ticks_after(schedule, now, 1)
    last = ""
    if facts.last_id is not None and facts.last_id != facts.ok_id:
        last = f" (the last run, #{facts.last_id}, was {facts.last_status})"
    if now > deadline:
        if facts.ok_id is None:
            origin = f"no run has succeeded since retention was installed at {_when(since)}"
        else:
            origin = f"no run has succeeded since run #{facts.ok_id} at {_when(since)}"
        return Health(
            healthy=False,
            reason=f"{origin}{last}: with the schedule '{schedule}', one was due by "
            f"{_when(deadline)}; is a worker running?",
        )
    if facts.ok_id is None:
        return Health(
            healthy=True,
            reason=f"no run has succeeded yet{last}, and none is due before {_when(deadline)} "
            f"(retention was installed at {_when(since)}); the next run is scheduled at "
            f"{_when(next_tick)}",
        )
    return Health(
        healthy=True,
        reason=f"the last run #{facts.ok_id} succeeded at {_when(facts.ok_finished_at)}{last}; "
        f"the next is scheduled at {_when(next_tick)}",
    )


def read(conn: psycopg.Connection) -> Facts:
    with conn.cursor(row_factory=class_row(Facts)) as cur:
        facts = cur.execute(queries.text("health_facts")).fetchone()
    assert facts is not None
    return facts


def check(conn: psycopg.Connection, settings: settings_mod.Settings) -> Health:
    """The health of retention on this database, under these settings."""
    return judge(read(conn), schedule=settings.schedule, max_run_seconds=settings.max_run_seconds)
