"""What the admin pages of retention runs show and do, apart from Django's ModelAdmin.

- `targets`: a run's summary (the ledger's `summary` column, README "The run summary") as one
  row per target: what went, or would go, and the details;
- `backlog`: what `retention status` computes (`retention.interfaces.report.status`): eligible
  rows per policy, the oldest of them, the outbox's pending and failed files, stuck jobs;
- `defer_run`: `retention:run` deferred through Procrastinate's Django app, under its queueing
  lock: a second one while one waits is refused, and the waiting job is named.

Everything here returns plain values; the templates print them as text (Django escapes them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import procrastinate
from procrastinate import exceptions as procrastinate_exceptions

from retention.engine import results
from retention.interfaces import connectors, report, tasks
from retention.pg import database

RUN_TASK = tasks.LOCKED_TASKS[0]
PERMISSION = "run_retention"
APP_NAME = "Procrastinate's Django app"


class NotInstalled(Exception):
    """Procrastinate's Django app has no retention tasks: the message says what to add."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    """One row of a run's detail: a target (jobs, a table policy, a file stage) and its figures."""

    name: str
    deleted: int
    details: str


def _counts(section: Mapping[str, Any], keys: tuple[str, ...]) -> list[str]:
    return [f"{key}: {section[key]}" for key in keys if section.get(key)]


def targets(summary: Mapping[str, Any] | None) -> list[Target]:
    """A stored summary, one row per target, in stage order (any summary version: unknown or
    missing parts are left out, never a failure)."""
    data = summary if isinstance(summary, Mapping) else {}
    rows: list[Target] = []
    jobs = data.get("jobs")
    if isinstance(jobs, Mapping):
        by_status = (
            jobs.get("by", {}).get("status", {}) if isinstance(jobs.get("by"), Mapping) else {}
        )
        parts = [f"{status}: {count}" for status, count in sorted(dict(by_status).items())]
        parts += _counts(jobs, ("events",))
        if jobs.get("oldest"):
            parts.append(f"oldest finished {jobs['oldest']}")
        if jobs.get("stopped"):
            parts.append(f"stopped: {jobs['stopped']}")
        rows.append(
            Target(name="jobs", deleted=_int(jobs.get("deleted")), details="; ".join(parts))
        )
    tables = data.get("tables")
    if isinstance(tables, Mapping):
        for name, table in tables.items():
            if not isinstance(table, Mapping):
                continue
            parts = _counts(
                table, ("child_rows", "files_queued", "partitions_dropped", "partition_rows")
            )
            if table.get("cutoff"):
                parts.append(f"cutoff {table['cutoff']}")
            if table.get("stopped"):
                parts.append(f"stopped: {table['stopped']}")
            parts += [str(warning) for warning in table.get("warnings") or ()]
            parts += [str(problem) for problem in table.get("partition_errors") or ()]
            rows.append(
                Target(
                    name=f"table {name}",
                    deleted=_int(table.get("deleted")),
                    details="; ".join(parts),
                )
            )
    for stage in results.FILE_STAGES:
        section = data.get(stage)
        if not isinstance(section, Mapping):
            continue
        parts = [report.human_bytes(_int(section.get("bytes")))]
        parts += _counts(section, ("failed", "pending", "refused", "missing", "referenced"))
        if section.get("stopped"):
            parts.append(f"stopped: {section['stopped']}")
        rows.append(
            Target(name=stage, deleted=_int(section.get("deleted")), details=", ".join(parts))
        )
    return rows


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _app() -> procrastinate.App:
    from procrastinate.contrib.django import app

    return app  # a proxy to the App built at ready time


def retention_blueprint() -> tasks.RetentionBlueprint:
    """The blueprint whose tasks Procrastinate's Django app holds (its settings, database=)."""
    task = _app().tasks.get(RUN_TASK)
    found = tasks.blueprint_of(task)
    if found is None:
        raise NotInstalled(
            f"{APP_NAME} has no {RUN_TASK} task: 'retention.contrib.django' adds it when it is "
            "in INSTALLED_APPS with valid settings (./manage.py check says what is wrong)"
        )
    return found


def backlog() -> dict[str, Any]:
    """What `retention status` shows, without its list of runs: the backlog per policy, the
    file outbox, the retention jobs that are stuck. On the database of Procrastinate's app."""
    found = retention_blueprint()
    location = connectors.location_for_app(_app(), database_arg=found.database, name=APP_NAME)
    with database.connect(location) as conn:
        return report.status(conn, found.settings, limit=0)


def backlog_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The backlog as rows: policy, eligible, oldest, its age (or the problem)."""
    entries = data.get("backlog") or {}
    named = [(f"jobs {status}", entry) for status, entry in entries.get("jobs", {}).items()]
    named += [(f"table {name}", entry) for name, entry in entries.get("tables", {}).items()]
    rows = []
    for name, entry in named:
        if "error" in entry:
            rows.append({"policy": name, "eligible": "?", "oldest": "", "age": entry["error"]})
            continue
        age = entry.get("oldest_age_seconds")
        rows.append(
            {
                "policy": name,
                "eligible": entry["eligible"],
                "oldest": entry.get("oldest") or "",
                "age": report.human_age(age) if age is not None else "",
            }
        )
    return rows


@dataclasses.dataclass(frozen=True, kw_only=True)
class Deferred:
    """What a click on "preview" or "run now" did: the job deferred, or the one already waiting."""

    job_id: int | None
    waiting: bool

    def message(self, dry_run: bool) -> str:
        what = "a dry run (preview)" if dry_run else "a retention run"
        if not self.waiting:
            return f"{what.capitalize()} is queued as job #{self.job_id}: a worker runs it next."
        which = f" (job #{self.job_id})" if self.job_id is not None else ""
        return (
            f"A retention run is already waiting{which}: {what} was not queued. "
            "One can be queued again once that one has started."
        )


def defer_run(*, dry_run: bool) -> Deferred:
    """`retention:run` deferred with its queueing lock (the blueprint's own configuration)."""
    task = retention_blueprint().run
    try:
        job_id = task.defer(dry_run=dry_run)
    except procrastinate_exceptions.AlreadyEnqueued:
        return Deferred(job_id=_waiting_job(str(task.queueing_lock)), waiting=True)
    return Deferred(job_id=job_id, waiting=False)


def _waiting_job(queueing_lock: str) -> int | None:
    from procrastinate.contrib.django import models as procrastinate_models

    job = (
        procrastinate_models.ProcrastinateJob.objects.filter(
            queueing_lock=queueing_lock, status="todo"
        )
        .order_by("id")
        .first()
    )
    return None if job is None else int(job.id)
