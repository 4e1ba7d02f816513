"""A retention run: the configured stages in order, one ledger row, one summary.

Stages (in this order): jobs, tables, files (the outbox), directories, orphans. Each stage is a
function of the run's Context returning its section of the summary; `only` picks some of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from retention import errors
from retention.config import dsn
from retention.config import settings as settings_mod
from retention.engine import batches, ledger
from retention.files import directories, orphans, outbox
from retention.jobs import prune
from retention.pg import database, migrate
from retention.tables import planning

logger = logging.getLogger(__name__)

ProgressHook = Callable[[str, float | None, dict[str, Any]], None]


@dataclasses.dataclass(kw_only=True)
class Context:
    conn: psycopg.Connection
    settings: settings_mod.Settings
    dry_run: bool
    now: dt.datetime
    limits: batches.Limits
    run: ledger.Run
    summary: dict[str, Any]
    hook: ProgressHook | None = None

    def progress(self, stage: str, fraction: float | None, *, force: bool = False) -> None:
        self.run.progress(stage, fraction, self.summary, force=force)
        if self.hook is not None:
            self.hook(stage, fraction, self.summary)

    def section_progress(self, stage: str) -> Callable[[dict[str, Any], float], None]:
        """A callback that keeps the stage's partial section in the summary as it goes."""

        def report(section: dict[str, Any], fraction: float) -> None:
            self.summary[stage] = section
            self.progress(stage, fraction)

        return report

    def run_target(self, stage: str, target: batches.Target) -> dict[str, Any]:
        """Walk a target through the engine, reporting progress under `stage`."""
        report = self.section_progress(stage)
        result = batches.run(
            self.conn,
            target,
            self.limits,
            dry_run=self.dry_run,
            on_progress=lambda partial: report(partial.as_dict(), partial.fraction),
        )
        return result.as_dict()


def stage_jobs(ctx: Context) -> dict[str, Any]:
    return ctx.run_target("jobs", prune.prune_target(ctx.conn, ctx.settings.jobs, ctx.now))


def stage_files(ctx: Context) -> dict[str, Any]:
    return outbox.drain(
        ctx.conn,
        dry_run=ctx.dry_run,
        deadline=ctx.limits.deadline,
        run_id=ctx.run.id,
        should_abort=ctx.limits.should_abort,
    )


def stage_tables(ctx: Context) -> dict[str, Any]:
    return planning.prune(
        ctx.conn,
        planning.check(ctx.conn, ctx.settings),
        ctx.limits,
        ctx.now,
        dry_run=ctx.dry_run,
        run_id=ctx.run.id,
        on_progress=ctx.section_progress("tables"),
    )


def stage_directories(ctx: Context) -> dict[str, Any]:
    return directories.sections(
        ctx.conn,
        ctx.settings,
        dry_run=ctx.dry_run,
        limits=ctx.limits,
        run_id=ctx.run.id,
        on_progress=ctx.section_progress("directories"),
    )


def stage_orphans(ctx: Context) -> dict[str, Any]:
    return orphans.sweep(
        ctx.conn,
        ctx.settings,
        dry_run=ctx.dry_run,
        limits=ctx.limits,
        run_id=ctx.run.id,
        on_progress=ctx.section_progress("orphans"),
    )


Stage = Callable[[Context], dict[str, Any]]
STAGES: dict[str, Stage] = {
    "jobs": stage_jobs,
    "tables": stage_tables,
    "files": stage_files,
    "directories": stage_directories,
    "orphans": stage_orphans,
}
ORDER: tuple[str, ...] = ("jobs", "tables", "files", "directories", "orphans")


def enabled_stages(settings: settings_mod.Settings, only: list[str] | None) -> list[str]:
    if only:
        unknown = [name for name in only if name not in ORDER]
        if unknown:
            raise errors.ConfigError(
                f"--only {', '.join(unknown)}: unknown; choose from {', '.join(ORDER)}"
            )
        return [name for name in ORDER if name in only and name in STAGES]
    chosen = []
    for name in ORDER:
        if name not in STAGES:
            continue
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


def limits_for(
    settings: settings_mod.Settings, should_abort: Callable[[], bool] | None = None
) -> batches.Limits:
    return batches.Limits(
        batch_size=settings.batch_size,
        max_batch_seconds=settings.max_batch_seconds,
        lock_timeout=settings.lock_timeout,
        deadline=time.monotonic() + settings.max_run_seconds,
        should_abort=should_abort or (lambda: False),
    )


def execute(
    settings: settings_mod.Settings,
    location: database.Location,
    *,
    stages: list[str],
    dry_run: bool,
    trigger: str,
    kind: str = "run",
    should_abort: Callable[[], bool] | None = None,
    hook: ProgressHook | None = None,
    extra: dict[str, Any] | None = None,
    custom: dict[str, Stage] | None = None,
) -> dict[str, Any]:
    """Run `stages` (names of STAGES, or of `custom`) under one ledger row; return the summary.
    Raises RunFailed (after recording it) when a stage fails."""
    table = {**STAGES, **(custom or {})}
    with connections(location) as (work, book):
        migrate.check_server(work.info.server_version)
        if "tables" in stages and "tables" not in (custom or {}):
            planning.check(work, settings, warn=True)
        run = ledger.start(
            book,
            kind=kind,
            trigger=trigger,
            dry_run=dry_run,
            settings={**settings.public(), **(extra or {})},
            exclusive=not dry_run,
        )
        now = work.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        summary: dict[str, Any] = {"run_id": run.id, "kind": kind, "dry_run": dry_run}
        ctx = Context(
            conn=work,
            settings=settings,
            dry_run=dry_run,
            now=now,
            limits=limits_for(settings, should_abort),
            run=run,
            summary=summary,
            hook=hook,
        )
        started = time.monotonic()
        status, error = "succeeded", None
        try:
            for name in stages:
                ctx.progress(name, 0.0, force=True)
                summary[name] = table[name](ctx)
                stopped = summary[name].get("stopped") if isinstance(summary[name], dict) else None
                if stopped == "aborted" or (stopped and ctx.limits.stop_reason()):
                    summary["stopped"] = stopped
                    status = "aborted" if stopped == "aborted" else "succeeded"
                    break
        except errors.ConfigError as exc:
            status, error = "failed", str(exc)
            raise
        except Exception as exc:
            status, error = "failed", dsn.redact(f"{type(exc).__name__}: {exc}")
            logger.exception("retention run %s failed", run.id, extra={"action": "run_failed"})
            raise errors.RunFailed(f"run #{run.id} failed: {error}") from exc
        finally:
            summary["status"] = status
            summary["complete"] = status == "succeeded" and "stopped" not in summary
            summary["seconds"] = round(time.monotonic() - started, 3)
            if error:
                summary["error"] = error
            if work.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                work.rollback()
            run.finish(status, summary, error)
            logger.info(
                "retention run %s %s",
                run.id,
                status,
                extra={"action": "run_finished", "run_id": run.id, "summary": summary},
            )
        return summary


def purge(
    settings: settings_mod.Settings,
    location: database.Location,
    filters: prune.PurgeFilters,
    *,
    dry_run: bool,
    trigger: str,
    should_abort: Callable[[], bool] | None = None,
    hook: ProgressHook | None = None,
) -> dict[str, Any]:
    """Delete the jobs an operator chose, through the same engine; unfinished jobs are refused
    (ConfigError) before the run is recorded, and never deleted by the run itself."""
    with database.connect(location) as conn:
        prune.check_purge(conn, filters)

    def stage(ctx: Context) -> dict[str, Any]:
        return ctx.run_target("jobs", prune.purge_target(filters))

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
        custom={"jobs": stage},
    )
