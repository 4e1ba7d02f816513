"""The Procrastinate blueprint: retention as tasks, with their periodic schedule and locks.

    retention_tasks = retention.blueprint(settings)
    app.add_tasks_from(retention_tasks, namespace="retention")
    await retention_tasks.prune_jobs.defer_async(dry_run=True)

gives `retention:run` (everything configured, in order), `retention:prune_jobs` and
`retention:purge_jobs`, on the configured queue, at most one of each queued (queueing lock) and
never two at once (execution lock). A job aborted through Procrastinate stops between batches;
its ledger row and the job both say 'aborted'.
"""

from __future__ import annotations

from typing import Any

import procrastinate
from procrastinate import exceptions, job_context
from procrastinate import tasks as procrastinate_tasks

from retention.config import settings as settings_mod
from retention.engine import results
from retention.interfaces import connectors
from retention.jobs import purge
from retention.pg import database
from retention.run import runner

NAMESPACE = "retention"
EXECUTION_LOCK = "procrastinate-retention"

Task = procrastinate_tasks.Task[Any, dict[str, Any], Any]


class RetentionBlueprint(procrastinate.Blueprint):
    """A Blueprint that also holds its tasks by name, to defer them once the blueprint is added
    to an app: `retention_tasks.prune_jobs.defer(dry_run=True)`."""

    run: Task
    prune_jobs: Task
    purge_jobs: Task


def _trigger(timestamp: int | None) -> str:
    return "periodic" if timestamp is not None else "deferred"


def _finish(summary: results.RunSummary) -> dict[str, Any]:
    """The task's result: the run's summary as JSON; an aborted run aborts the job."""
    if summary.status == "aborted":
        raise exceptions.JobAborted(f"retention run #{summary.run_id} aborted between batches")
    return summary.to_json()


def blueprint(settings: settings_mod.Settings | None = None) -> RetentionBlueprint:
    settings = settings or settings_mod.load()
    bp = RetentionBlueprint()
    own_schedule = settings.jobs.schedule is not None

    def location(context: job_context.JobContext) -> database.Location:
        return connectors.location_for_app(context.app, settings)

    @bp.periodic(cron=settings.schedule)
    @bp.task(
        name="run",
        queue=settings.queue,
        lock=EXECUTION_LOCK,
        queueing_lock=f"{NAMESPACE}:run",
        pass_context=True,
    )
    def run(
        context: job_context.JobContext,
        timestamp: int | None = None,
        dry_run: bool = False,
        only: list[str] | None = None,
    ) -> dict[str, Any]:
        stages = runner.enabled_stages(settings, only)
        if own_schedule and timestamp is not None:
            stages = [name for name in stages if name != "jobs"]
        return _finish(
            runner.execute(
                settings,
                location(context),
                stages=stages,
                dry_run=dry_run,
                trigger=_trigger(timestamp),
                should_abort=context.should_abort,
            )
        )

    @bp.task(
        name="prune_jobs",
        queue=settings.queue,
        lock=EXECUTION_LOCK,
        queueing_lock=f"{NAMESPACE}:prune_jobs",
        pass_context=True,
    )
    def prune_jobs(
        context: job_context.JobContext, timestamp: int | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        return _finish(
            runner.execute(
                settings,
                location(context),
                stages=["jobs"],
                dry_run=dry_run,
                trigger=_trigger(timestamp),
                should_abort=context.should_abort,
            )
        )

    if own_schedule:
        assert settings.jobs.schedule is not None
        bp.periodic(cron=settings.jobs.schedule)(prune_jobs)

    @bp.task(
        name="purge_jobs",
        queue=settings.queue,
        lock=EXECUTION_LOCK,
        queueing_lock=f"{NAMESPACE}:purge_jobs",
        pass_context=True,
    )
    def purge_jobs(
        context: job_context.JobContext,
        job_ids: list[int] | None = None,
        queue: str | None = None,
        task: str | None = None,
        statuses: list[str] | None = None,
        finished_before: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        filters = purge.PurgeFilters.parse(
            job_ids=job_ids,
            queue=queue,
            task=task,
            statuses=statuses,
            finished_before=finished_before,
        )
        return _finish(
            runner.purge(
                settings,
                location(context),
                filters,
                dry_run=dry_run,
                trigger="deferred",
                should_abort=context.should_abort,
            )
        )

    bp.run, bp.prune_jobs, bp.purge_jobs = run, prune_jobs, purge_jobs
    return bp
