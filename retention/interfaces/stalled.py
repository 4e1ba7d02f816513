"""Retention jobs left `doing` by a dead worker: found through Procrastinate's heartbeats, retried
once, failed after that, so that they stop holding the execution lock.

A worker killed hard (SIGKILL, OOM, a lost machine) leaves its job `doing`. Our three tasks share
the execution lock `procrastinate-retention`, so without this every later retention job would
wait behind it forever. Procrastinate's workers send a heartbeat every 10 s
(`update_heartbeat_interval`); a worker whose last heartbeat is older than
STALLED_AFTER_SECONDS is dead to `JobManager.get_stalled_jobs`, as to Procrastinate's own worker
start-up pruning (`stalled_worker_timeout`, 30 s). The task `retention:recover_stalled` runs
every minute (RECOVER_CRON) on the retention queue, under no execution lock and with a queueing
lock of its own, so it runs while the lock is held; a new worker defers it at start-up (the
latest minute is due). A stalled job of ours is then retried (back to `todo`, attempts + 1) if
it has never been retried, else failed: a run that kills its worker every time is not retried
forever. The killed run's ledger row, whose database session died with the worker, is marked
`abandoned`.

The bound: a stalled job stops blocking the lock at most STALLED_AFTER_SECONDS + 10 s (the
heartbeat interval) + 60 s (the schedule) + 5 s (a worker's polling interval) after the kill,
while at least one worker runs the retention queue: BOUND_SECONDS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
from procrastinate import jobs, manager
from psycopg.rows import dict_row

from retention.engine import ledger
from retention.pg import database, migrate, queries

logger = logging.getLogger(__name__)

STALLED_AFTER_SECONDS = 30.0
RECOVER_CRON = "* * * * *"
RETRIES = 1
BOUND_SECONDS = 105


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recovered:
    retried: list[int]
    failed: list[int]
    abandoned: list[int]

    def to_json(self) -> dict[str, list[int]]:
        return dataclasses.asdict(self)


async def recover(
    job_manager: manager.JobManager,
    task_names: Iterable[str],
    location: Callable[[], database.Location],
) -> Recovered:
    """Retry (or fail, once retried) every stalled job of `task_names`; mark the runs of dead
    sessions abandoned in the ledger of `location()`."""
    retried: list[int] = []
    failed: list[int] = []
    for name in task_names:
        stalled = await job_manager.get_stalled_jobs(
            task_name=name, seconds_since_heartbeat=STALLED_AFTER_SECONDS
        )
        for job in stalled:
            assert job.id is not None
            outcome = await _free(job_manager, job)
            if outcome is None:
                continue
            (retried if outcome == "retried" else failed).append(job.id)
            logger.warning(
                "job #%s (%s) was left doing by a dead worker: %s",
                job.id,
                name,
                outcome,
                extra={"action": "stalled_job_recovered", "job_id": job.id, "outcome": outcome},
            )
    abandoned = await asyncio.to_thread(_abandon, location)
    return Recovered(retried=retried, failed=failed, abandoned=abandoned)


async def _free(job_manager: manager.JobManager, job: jobs.Job) -> str | None:
    """Retry a stalled job never retried, else (or when a job with its queueing lock already
    waits, which makes the retry impossible) fail it. None when it is no longer `doing`."""
    assert job.id is not None
    if job.attempts < RETRIES:
        try:
            await job_manager.retry_job(job)
            return "retried"
        except Exception as exc:  # its queueing lock is taken, or it is no longer doing
            logger.debug("stalled job #%s not retried: %s", job.id, exc)
    try:
        await job_manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
    except Exception as exc:  # finished by someone else meanwhile
        logger.debug("stalled job #%s left as it is: %s", job.id, exc)
        return None
    if job.attempts < RETRIES:
        return "failed (a job with its queueing lock already waits, and does its work)"
    return f"failed (already retried {job.attempts} time(s))"


def _abandon(location: Callable[[], database.Location]) -> list[int]:
    where = location()
    migrate.ensure(where)
    with database.connect(where) as conn:
        return ledger.abandon_dead(conn)


def unfinished(conn: psycopg.Connection, task_names: Sequence[str]) -> list[dict[str, Any]]:
    """The retention jobs waiting or running, each with `why`: running, stuck (its worker is
    dead or gone), waiting behind the job that holds the execution lock, scheduled, or waiting
    for a worker."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = list(
            cur.execute(queries.text("retention_jobs_unfinished"), {"tasks": list(task_names)})
        )
    by_id = {row["id"]: row for row in rows}
    for row in rows:
        row["why"] = _why(row, by_id)
    return rows


def _why(row: dict[str, Any], by_id: dict[int, dict[str, Any]]) -> str:
    if row["status"] == "doing":
        age = row["heartbeat_age"]
        if age is not None and age <= STALLED_AFTER_SECONDS:
            return f"running on worker {row['worker_id']}"
        dead = (
            "its worker is gone (killed?)"
            if age is None
            else f"its worker's last heartbeat was {age:.0f} s ago (dead?)"
        )
        return (
            f"stuck: {dead}; it holds the lock {row['lock']}, until retention:recover_stalled "
            f"retries it (once, then fails it), within about {BOUND_SECONDS} s of the kill "
            "while a worker runs the retention queue"
        )
    holder = row["held_by"]
    if holder is not None:
        held = by_id.get(holder)
        state = f": {held['why']}" if held is not None else ""
        return f"waiting behind job #{holder}, which holds the execution lock {row['lock']}{state}"
    if row["later"]:
        return f"scheduled for {row['scheduled_at']:%Y-%m-%d %H:%M:%S}"
    return f"waiting for a worker on the queue {row['queue_name']}"
