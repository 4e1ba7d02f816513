"""An operator's purge: chosen finished jobs deleted now, through the same engine. Unfinished
jobs are refused before anything is deleted, and never matched by the batches."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import psycopg
from psycopg import sql

from retention import errors
from retention.archive import writer as archive_writer
from retention.config import durations, globs
from retention.engine import batches
from retention.holds import conditions as holds
from retention.jobs import deleter, paths, policy
from retention.pg import queries

FINAL = policy.FINAL
UNFINISHED = policy.UNFINISHED


@dataclasses.dataclass(frozen=True, kw_only=True)
class PurgeFilters:
    """An operator's choice of jobs to delete now. The filters intersect."""

    job_ids: tuple[int, ...] = ()
    queue: str | None = None
    task: str | None = None
    statuses: tuple[str, ...] = ()
    finished_before: dt.datetime | None = None

    @classmethod
    def parse(
        cls,
        *,
        job_ids: list[int] | None,
        queue: str | None,
        task: str | None,
        statuses: list[str] | None,
        finished_before: str | None,
        finished_before_name: str = "finished_before",
    ) -> PurgeFilters:
        """Filters as a person gives them: `finished_before` a timestamp or a duration ago."""
        when = None
        if finished_before:
            try:
                when = durations.parse_when(finished_before, dt.datetime.now(dt.UTC))
            except ValueError as exc:
                raise errors.ConfigError(f"{finished_before_name}: {exc}") from None
        return cls(
            job_ids=tuple(job_ids or ()),
            queue=queue,
            task=task,
            statuses=tuple(statuses or ()),
            finished_before=when,
        )

    @property
    def empty(self) -> bool:
        return not (
            self.job_ids or self.queue or self.task or self.statuses or self.finished_before
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_ids": list(self.job_ids),
            "queue": self.queue,
            "task": self.task,
            "statuses": list(self.statuses),
            "finished_before": self.finished_before.isoformat() if self.finished_before else None,
        }


def check_purge(conn: psycopg.Connection, filters: PurgeFilters) -> None:
    """Refuse, before anything is deleted, a purge that names unfinished or unknown things."""
    if filters.empty:
        raise errors.ConfigError(
            "purge needs at least one filter: --job-id, --queue, --task, --status or "
            "--finished-before"
        )
    for status in filters.statuses:
        if status in UNFINISHED:
            raise errors.ConfigError(
                f"--status {status}: {status} jobs are not finished and are never deleted; "
                "cancel them first (procrastinate cancel / app.job_manager.cancel_job_by_id)"
            )
        if status not in FINAL:
            raise errors.ConfigError(
                f"--status {status}: unknown status; use one of {', '.join(FINAL)}"
            )
    for name, glob in (("queue", filters.queue), ("task", filters.task)):
        if glob is None:
            continue
        try:
            pattern = globs.to_regex(glob)
        except ValueError as exc:
            raise errors.ConfigError(f"--{name} {glob!r}: {exc}") from None
        row = conn.execute(queries.text(f"any_{name}_matches"), {"pattern": pattern}).fetchone()
        if not (row and row[0]):
            raise errors.ConfigError(f"--{name} {glob!r} matches no existing {name} of any job")
    if filters.job_ids:
        ids = list(filters.job_ids)
        unfinished = conn.execute(queries.text("unfinished_jobs_among"), {"ids": ids}).fetchall()
        if unfinished:
            listed = ", ".join(f"#{job_id} ({status})" for job_id, status in unfinished)
            raise errors.ConfigError(
                f"refusing to delete unfinished jobs: {listed}; cancel them first, then purge"
            )
        found = {row[0] for row in conn.execute(queries.text("existing_job_ids"), {"ids": ids})}
        missing = sorted(set(ids) - found)
        if missing:
            raise errors.ConfigError(f"no job with id {', '.join(map(str, missing))}")


def _params(filters: PurgeFilters) -> dict[str, Any]:
    return {
        "statuses": list(filters.statuses or FINAL),
        "ids": list(filters.job_ids) or None,
        "queue_re": globs.to_regex(filters.queue) if filters.queue else None,
        "task_re": globs.to_regex(filters.task) if filters.task else None,
        "before": filters.finished_before,
    }


def held(conn: psycopg.Connection, filters: PurgeFilters) -> tuple[int, tuple[dict[str, Any], ...]]:
    """The finished jobs the purge matches that holds keep: how many, and by which holds (each
    hold's id, reason and how many of them it names)."""
    matched = sql.SQL(queries.text("purge_jobs_select").rstrip().rstrip(";")).format(
        hold=holds.job_held("j"), lock=sql.SQL("")
    )
    statement = queries.get("held_jobs_by_hold").format(matched=matched, active=holds.active())
    row = conn.execute(statement, {**_params(filters), "after_id": 0, "limit": None}).fetchone()
    if row is None:
        return 0, ()
    return int(row[0]), tuple(row[1])


def purge_target(
    filters: PurgeFilters,
    archive: archive_writer.Writer | None = None,
    path: paths.JobsPath | None = None,
) -> batches.Target:
    """The operator's purge as an engine target; on a set-based `path`, each batch deletes with
    triggers and foreign-key actions off and does their work in bulk (retention.jobs.paths)."""
    set_based = path is not None and path.set_based
    params = _params(filters)
    hold = sql.SQL("NOT {}").format(holds.job_held("j"))
    select = queries.get("purge_jobs_select")

    def batch_params(after: tuple[Any, ...], limit: int) -> dict[str, Any]:
        return {**params, "after_id": after[0], "limit": limit}

    segment = batches.Segment(
        name="purge",
        select=select.format(hold=hold, lock=sql.SQL("")),
        locking_select=select.format(hold=hold, lock=sql.SQL("FOR UPDATE OF j SKIP LOCKED")),
        params=batch_params,
        start=(0,),
        key=("job_id",),
        groups=policy.GROUPS,
        oldest="finished",
        settings=paths.SET_BASED_SETTINGS if set_based else (),
    )
    return batches.Target(
        name="jobs",
        segments=[segment],
        deleter=deleter.JobDeleter(
            unchanged_since=filters.finished_before,
            held=lambda conn: held(conn, filters),
            archive=archive,
            path=path if set_based else None,
        ),
    )
