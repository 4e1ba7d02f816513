"""The Procrastinate blueprint: retention as tasks, with their periodic schedule and locks.

    retention_tasks = retention.blueprint(settings)
    app.add_tasks_from(retention_tasks, namespace="retention")
    await retention_tasks.prune_jobs.defer_async(dry_run=True)

gives `retention:run` (everything configured, in order), `retention:prune_jobs` and
`retention:purge_jobs`, on the configured queue, at most one of each queued (queueing lock) and
never two at once (execution lock). A job aborted through Procrastinate stops between batches;
its ledger row and the job both say 'aborted'. `retention:recover_stalled` (every minute, under
no execution lock) frees that lock from a job a dead worker left `doing` (see
`retention.interfaces.stalled`).

Every task works on the database of the app it runs in, as its connector tells it
(`retention.interfaces.connectors`), or on `database=` when given; it never guesses one. It
checks that the database is migrated first. A failure we can name (settings, an unmigrated
database, an unknown database) fails the job with one line in the worker's log, no traceback.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import procrastinate
from procrastinate import exceptions, job_context
from procrastinate import tasks as procrastinate_tasks

from retention import errors, holds
from retention.config import dsn
from retention.config import settings as settings_mod
from retention.engine import results
from retention.interfaces import connectors, procrastinate_private, stalled
from retention.jobs import purge
from retention.pg import database as pg_database
from retention.pg import migrate
from retention.run import runner

NAMESPACE = "retention"
EXECUTION_LOCK = "procrastinate-retention"
# The tasks under the execution lock, by their names in an app (the README's namespace).
LOCKED_TASKS = (f"{NAMESPACE}:run", f"{NAMESPACE}:prune_jobs", f"{NAMESPACE}:purge_jobs")
RECOVER_TASK = f"{NAMESPACE}:recover_stalled"
# The attribute of our tasks that holds their blueprint (Procrastinate's `Task.blueprint` is the
# app once the blueprint is added to it).
ORIGIN = "retention_blueprint"

Task = procrastinate_tasks.Task[Any, dict[str, Any], Any]


class AppConfigError(errors.ConfigError, argparse.ArgumentTypeError):
    """Bad settings met while an app is built (ours, or a user's that calls `blueprint()` at
    import): Procrastinate's CLI loads `--app` as an argparse type, so it shows this as a usage
    error of --app, one line and exit code 2, and so does the `retention` CLI."""


class RetentionBlueprint(procrastinate.Blueprint):
    """A Blueprint that also holds its tasks by name, to defer them once the blueprint is added
    to an app (`retention_tasks.prune_jobs.defer(dry_run=True)`), and the settings and
    database it was built with (read by `retention --app`)."""

    run: Task
    prune_jobs: Task
    purge_jobs: Task
    place_hold: Task
    release_hold: Task
    recover_stalled: procrastinate_tasks.Task[Any, Any, Any]
    settings: settings_mod.Settings
    database: str | None


class _OneLineFailures(logging.Filter):
    """A job failed on one of our errors (a message saying what to fix) is logged by
    Procrastinate's worker as one line with the message, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, errors.RetentionError):
            record.msg = f"{record.getMessage()} - {dsn.redact(str(exc))}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_tracebacks() -> None:
    worker_logger = logging.getLogger("procrastinate.worker")
    if not any(isinstance(f, _OneLineFailures) for f in worker_logger.filters):
        worker_logger.addFilter(_OneLineFailures())


def load_settings() -> settings_mod.Settings:
    try:
        return settings_mod.load()
    except errors.ConfigError as exc:
        raise AppConfigError(str(exc)) from None


def _trigger(timestamp: int | None) -> str:
    return "periodic" if timestamp is not None else "deferred"


def _finish(summary: results.RunSummary) -> dict[str, Any]:
    """The task's result: the run's summary as JSON; an aborted run aborts the job."""
    if summary.status == "aborted":
        raise exceptions.JobAborted(f"retention run #{summary.run_id} aborted between batches")
    return summary.to_json()


def blueprint(
    settings: settings_mod.Settings | None = None, *, database: str | None = None
) -> RetentionBlueprint:
    """The retention tasks. `database` (a libpq URL or conninfo) names the database when the
    app's connector does not tell it (see `retention.interfaces.connectors`)."""
    settings = settings or load_settings()
    if database is not None:
        connectors.given(database, "retention.blueprint(database=...)")
    _quiet_tracebacks()
    bp = RetentionBlueprint()
    bp.settings, bp.database = settings, database
    own_schedule = settings.jobs.schedule is not None

    def location(context: job_context.JobContext) -> pg_database.Location:
        assert context.app is not None
        found = connectors.location_for_app(context.app, database_arg=database)
        migrate.ensure(found)
        return found

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

    procrastinate_private.register_periodic(bp, run, settings.schedule)

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
        procrastinate_private.register_periodic(bp, prune_jobs, settings.jobs.schedule)

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

    @bp.task(
        name="recover_stalled",
        queue=settings.queue,
        queueing_lock=f"{NAMESPACE}:recover_stalled",
        pass_context=True,
    )
    async def recover_stalled(
        context: job_context.JobContext, timestamp: int | None = None
    ) -> dict[str, Any]:
        assert context.app is not None
        app = context.app
        locked = [task.name for task in (run, prune_jobs, purge_jobs)]
        recovered = await stalled.recover(
            app.job_manager,
            locked,
            lambda: connectors.location_for_app(app, database_arg=database),
        )
        return recovered.to_json()

    procrastinate_private.register_periodic(bp, recover_stalled, stalled.RECOVER_CRON)

    @bp.task(name="place_hold", queue=settings.queue, pass_context=True)
    def place_hold(
        context: job_context.JobContext,
        reason: str,
        job_ids: list[int] | None = None,
        queue: str | None = None,
        task: str | None = None,
        table: str | None = None,
        keys: list[str] | None = None,
        where: dict[str, Any] | None = None,
        until: str | None = None,
        by: str | None = None,
    ) -> dict[str, Any]:
        """A legal hold placed by a deferred job (as `retention hold add`): the hold as JSON."""
        with pg_database.connect(location(context)) as conn:
            return holds.add(
                conn,
                settings,
                reason=reason,
                job_ids=job_ids or (),
                queue=queue,
                task=task,
                table=table,
                keys=keys or (),
                where=where,
                until=until,
                by=by or "task place_hold",
            ).to_json()

    @bp.task(name="release_hold", queue=settings.queue, pass_context=True)
    def release_hold(
        context: job_context.JobContext, hold_id: int, by: str | None = None
    ) -> dict[str, Any]:
        """Release a legal hold (as `retention hold release`): the hold as JSON."""
        with pg_database.connect(location(context)) as conn:
            return holds.release(conn, hold_id, by=by).to_json()

    bp.place_hold, bp.release_hold = place_hold, release_hold
    bp.run, bp.prune_jobs, bp.purge_jobs = run, prune_jobs, purge_jobs
    bp.recover_stalled = recover_stalled
    for task in (run, prune_jobs, purge_jobs, recover_stalled):
        setattr(task, ORIGIN, bp)
    return bp


def blueprint_of(task: Any) -> RetentionBlueprint | None:
    """The blueprint a task of ours was built in (its settings, its database=), else None."""
    found = getattr(task, ORIGIN, None)
    return found if isinstance(found, RetentionBlueprint) else None
