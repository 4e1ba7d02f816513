"""A retention run: the configured stages in order, one ledger row, one summary.

Every stage is checked before anything runs (a ConfigError then, and nothing deleted); the
stages then run in order (see `retention.run.stages`) until one of them stops the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import psycopg

from retention import errors, holds
from retention.config import dsn
from retention.config import settings as settings_mod
from retention.engine import batches, ledger, results
from retention.jobs import purge as job_purge
from retention.pg import database, migrate
from retention.run import maintenance
from retention.run import stages as stages_mod

logger = logging.getLogger(__name__)

ORDER = stages_mod.ORDER
ProgressHook = stages_mod.ProgressHook


def enabled_stages(settings: settings_mod.Settings, only: list[str] | None) -> list[str]:
    if only:
        unknown = [name for name in only if name not in ORDER]
        if unknown:
            raise errors.ConfigError(
                f"--only {', '.join(unknown)}: unknown; choose from {', '.join(ORDER)}"
            )
        return [name for name in ORDER if name in only]
    chosen = []
    for name in ORDER:
        if name == "jobs" and not settings.jobs.enabled:
            continue
        if name == "orphans" and not settings.orphans.enabled:
            continue
        if name == "directories" and not any(p.enabled for p in settings.directories):
            continue
        chosen.append(name)
    return chosen


@contextlib.contextmanager
def connections(
    location: database.Location,
) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """The work connection and the ledger connection, both in autocommit."""
    with database.connect(location) as work, database.connect(location) as book:
        yield work, book


@dataclasses.dataclass(frozen=True, kw_only=True)
class _HeldSummary(results.RunSummary):
    """A finished run's summary with the legal holds in force when it started (`holds`)."""

    holds: holds.InForce
    maintenance: maintenance.Result | None = None

    def to_json(self) -> results.JSON:
        data = {**super().to_json(), "holds": self.holds.to_json()}
        if self.maintenance is not None:
            data["maintenance"] = self.maintenance.to_json()
        return data


def _with_holds(
    summary: results.RunSummary,
    in_force: holds.InForce,
    done: maintenance.Result | None = None,
) -> results.RunSummary:
    fields = {field.name: getattr(summary, field.name) for field in dataclasses.fields(summary)}
    return _HeldSummary(**fields, holds=in_force, maintenance=done)


def limits_for(
    settings: settings_mod.Settings, should_abort: Callable[[], bool] | None = None
) -> batches.Limits:
    return batches.Limits(
        batch_size=settings.batch_size,
        max_batch_seconds=settings.max_batch_seconds,
        lock_timeout=settings.lock_timeout,
        deadline=time.monotonic() + settings.max_run_seconds,
        should_abort=should_abort or (lambda: False),
        pause=settings.pause_between_batches,
        replication=(
            batches.Replication(settings.max_replication_lag)
            if settings.max_replication_lag is not None
            else None
        ),
    )


def execute(
    settings: settings_mod.Settings,
    location: database.Location,
    *,
    stages: Sequence[str],
    dry_run: bool,
    trigger: str,
    kind: str = "run",
    should_abort: Callable[[], bool] | None = None,
    hook: ProgressHook | None = None,
    extra: dict[str, Any] | None = None,
    custom: Mapping[str, stages_mod.Stage[Any]] | None = None,
) -> results.RunSummary:
    """Run `stages` (names of stages.STAGES, or of `custom`) under one ledger row; return the
    summary. Every stage is checked first: a ConfigError then is recorded as a failed run (and
    raised) before anything is deleted. Raises RunFailed (after recording it) when a stage
    fails."""
    table = {**stages_mod.STAGES, **(custom or {})}
    with connections(location) as (work, book):
        migrate.check(work)
        migrate.check_replication_role(work)
        in_force = holds.in_force(work)
        run = ledger.start(
            book,
            kind=kind,
            trigger=trigger,
            dry_run=dry_run,
            settings={**settings.public(), **(extra or {})},
            exclusive=not dry_run,
        )
        row = work.execute("SELECT now()").fetchone()
        assert row is not None
        ctx = stages_mod.Context(
            conn=work,
            settings=settings,
            dry_run=dry_run,
            now=row[0],
            limits=limits_for(settings, should_abort),
            run=run,
            kind=kind,
            hook=hook,
        )
        started = time.monotonic()
        status, error = "succeeded", None
        done: maintenance.Result | None = None
        try:
            # Every stage is checked before the first delete: a problem is a failed run, recorded.
            prepared = [(name, table[name].prepare(work, settings)) for name in stages]
            for name, stage in prepared:
                ctx.report(name, None, 0.0, force=True)
                section = ctx.sections[name] = stage(ctx)
                stopped = section.stopped
                if stopped is results.StopReason.ABORTED or (
                    stopped is not None and ctx.limits.stop_reason()
                ):
                    ctx.stopped = stopped
                    status = "aborted" if stopped is results.StopReason.ABORTED else "succeeded"
                    break
            jobs = ctx.sections.get("jobs")
            if status == "succeeded" and jobs is not None:
                done = maintenance.after_run(work, settings, deleted=jobs.deleted, dry_run=dry_run)
        except errors.ConfigError as exc:
            status, error = "failed", str(exc)
            raise
        except Exception as exc:
            status, error = "failed", dsn.redact(f"{type(exc).__name__}: {exc}")
            logger.exception("retention run %s failed", run.id, extra={"action": "run_failed"})
            raise errors.RunFailed(f"run #{run.id} failed: {error}") from exc
        finally:
            summary = ctx.summary(status, seconds=round(time.monotonic() - started, 3), error=error)
            summary = _with_holds(summary, in_force, done)
            if work.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                work.rollback()
            run.finish(summary)
            logger.info(
                "retention run %s %s in %.1f s: %s",
                run.id,
                status,
                summary.seconds,
                ", ".join(f"{k} {v}" for k, v in summary.totals().deleted.items())
                or "nothing deleted",
                extra={"action": "run_finished", "run_id": run.id, "status": status},
            )
            logger.debug(
                "retention run %s summary",
                run.id,
                extra={"action": "run_summary", "run_id": run.id, "summary": summary.to_json()},
            )
        return summary


def purge(
    settings: settings_mod.Settings,
    location: database.Location,
    filters: job_purge.PurgeFilters,
    *,
    dry_run: bool,
    trigger: str,
    should_abort: Callable[[], bool] | None = None,
    hook: ProgressHook | None = None,
) -> results.RunSummary:
    """Delete the jobs an operator chose, through the same engine; unfinished jobs are refused
    (ConfigError) before the run is recorded, and never deleted by the run itself."""
    with database.connect(location) as conn:
        job_purge.check_purge(conn, filters)
    return execute(
        settings,
        location,
        stages=["jobs"],
        dry_run=dry_run,
        trigger=trigger,
        kind="purge",
        should_abort=should_abort,
        hook=hook,
        extra={"purge": filters.as_dict()},
        custom={
            "jobs": stages_mod.jobs_stage(
                lambda ctx, path: job_purge.purge_target(
                    filters, stages_mod.purge_archive(ctx), path
                )
            )
        },
    )
