"""The stages of a run, in order, and the one loop every stage with several targets goes through.

A stage is checked before the run starts (its policies against the catalog and the disk, once)
and then run with what the check found. Stages: jobs, tables, files (the outbox), directories,
orphans. Tables, directory sweeps and orphan roots are each a list of targets walked by `each`,
which does the stop checks, the progress reports and the stop hand-up for all of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import psycopg

from retention.archive import writer as archive_writer
from retention.config import policies
from retention.config import settings as settings_mod
from retention.engine import batches, ledger, results
from retention.files import directories, orphans, outbox, references, storage_orphans, sweeps
from retention.jobs import deleter, paths, prune
from retention.tables import planning
from retention.tables import prune as table_prune

ORDER: tuple[str, ...] = ("jobs", "tables", "files", "directories", "orphans")

ProgressHook = Callable[[str, float | None, results.Section | None], None]


@dataclasses.dataclass(kw_only=True)
class Context:
    """One run in progress: its connection, settings, limits, ledger row and sections so far."""

    conn: psycopg.Connection
    settings: settings_mod.Settings
    dry_run: bool
    now: dt.datetime
    limits: batches.Limits
    run: ledger.Run
    kind: str
    hook: ProgressHook | None = None
    sections: dict[str, results.Section] = dataclasses.field(default_factory=dict)
    stopped: results.StopReason | None = None

    def summary(self, status: str = "running", **extra: Any) -> results.RunSummary:
        return results.RunSummary(
            run_id=self.run.id,
            kind=self.kind,
            dry_run=self.dry_run,
            status=status,
            sections=dict(self.sections),
            stopped=self.stopped,
            warnings=self.limits.warnings,
            **extra,
        )

    def report(
        self,
        stage: str,
        section: results.Section | None,
        fraction: float | None,
        *,
        force: bool = False,
    ) -> None:
        """Keep the stage's partial section, and say how far the stage is."""
        if section is not None:
            self.sections[stage] = section
        self.run.progress(stage, fraction, self.summary, force=force)
        if self.hook is not None:
            self.hook(stage, fraction, section)


class Stoppable(Protocol):
    @property
    def stopped(self) -> results.StopReason | None: ...


T = TypeVar("T")
S = TypeVar("S", bound=Stoppable)
Partial = Callable[[S, float], None]


def each(
    ctx: Context,
    stage: str,
    targets: Sequence[tuple[str, T]],
    work: Callable[[T, Partial[S]], S],
    build: Callable[[Mapping[str, S], results.StopReason | None], results.Section],
) -> results.Section:
    """The one stage loop: `work` each named target in order, reporting its partial results
    under `stage`, until a limit of the run (time budget, abort) stops it; `build` makes the
    stage's section from the targets done and why the loop stopped."""
    done: dict[str, S] = {}
    total = max(len(targets), 1)
    for index, (name, target) in enumerate(targets):
        reason = ctx.limits.stop_reason()
        if reason:
            return build(done, reason)

        def partial(section: S, fraction: float, i: int = index, name: str = name) -> None:
            ctx.report(stage, build({**done, name: section}, None), (i + fraction) / total)

        done[name] = work(target, partial)
        stopped = done[name].stopped
        if stopped is not None and stopped.ends_run:
            return build(done, stopped)
    return build(done, None)


def walk(
    ctx: Context, stage: str, target: batches.Target, path: paths.JobsPath | None = None
) -> results.JobsSection:
    """A jobs target (prune or purge) through the engine, reporting progress under `stage`;
    `path` is the way its batches delete (reported in its section)."""
    name, reason = (path.name, path.reason) if path is not None else (None, None)

    def report(partial: batches.Result) -> None:
        section = results.JobsSection(walk=partial.freeze(), path=name, path_reason=reason)
        ctx.report(stage, section, partial.fraction)

    result = batches.run(ctx.conn, target, ctx.limits, dry_run=ctx.dry_run, on_progress=report)
    counted = target.deleter.held if isinstance(target.deleter, deleter.JobDeleter) else None
    held, held_by = counted(ctx.conn) if counted is not None else (None, ())
    return results.JobsSection(
        walk=result.freeze(), held=held, held_by=held_by, path=name, path_reason=reason
    )


C = TypeVar("C")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Stage(Generic[C]):
    """A stage: `check` runs before anything is deleted (its problems are ConfigErrors, and
    nothing runs then); `run` gets what the check found."""

    name: str
    check: Callable[[psycopg.Connection, settings_mod.Settings], C]
    run: Callable[[Context, C], results.Section]

    def prepare(
        self, conn: psycopg.Connection, settings: settings_mod.Settings
    ) -> Callable[[Context], results.Section]:
        checked = self.check(conn, settings)
        return lambda ctx: self.run(ctx, checked)


def _nothing(conn: psycopg.Connection, settings: settings_mod.Settings) -> None:
    return None


def _jobs(ctx: Context, checked: None) -> results.Section:
    archive = archive_writer.for_policy(
        ctx.settings, "jobs", ctx.settings.jobs.archived, ctx.run.id
    )
    path = paths.choose(ctx.conn, ctx.settings.jobs_path)
    target = prune.prune_target(ctx.conn, ctx.settings.jobs, ctx.now, archive, path)
    return walk(ctx, "jobs", target, path)


def _check_tables(conn: psycopg.Connection, settings: settings_mod.Settings) -> list[planning.Plan]:
    return planning.check(conn, settings, warn=True)


def _tables(ctx: Context, plans: list[planning.Plan]) -> results.Section:
    def work(plan: planning.Plan, partial: Partial[results.TableSection]) -> results.TableSection:
        archived = archive_writer.table_archived(ctx.settings, plan.name)
        return table_prune.prune(
            ctx.conn,
            plan,
            ctx.now,
            ctx.limits,
            dry_run=ctx.dry_run,
            run_id=ctx.run.id,
            on_progress=partial,
            archive=archive_writer.for_policy(
                ctx.settings,
                f"table:{plan.name}",
                archived,
                ctx.run.id,
                files=archive_writer.table_archives_files(ctx.settings, plan.name),
            ),
        )

    def build(
        done: Mapping[str, results.TableSection], stopped: results.StopReason | None
    ) -> results.Section:
        return results.TablesStage(tables=done, stopped=stopped)

    return each(ctx, "tables", [(plan.name, plan) for plan in plans], work, build)


def _check_files(
    conn: psycopg.Connection, settings: settings_mod.Settings
) -> list[references.Column]:
    return references.resolve(conn, references.references(settings))


def _files(ctx: Context, columns: list[references.Column]) -> results.Section:
    return outbox.drain(
        ctx.conn,
        roots_allowed=outbox.configured_roots(ctx.settings),
        archive_root=ctx.settings.archive.root,
        columns=columns,
        dry_run=ctx.dry_run,
        deadline=ctx.limits.deadline,
        run_id=ctx.run.id,
        should_abort=ctx.limits.should_abort,
        limits=ctx.limits,
    )


def _sweep_stage(
    done: Mapping[str, results.SweepSection], stopped: results.StopReason | None
) -> results.Section:
    return results.SweepStage(roots=done, stopped=stopped)


def _check_directories(
    conn: psycopg.Connection, settings: settings_mod.Settings
) -> list[policies.DirectoryPolicy]:
    return directories.check(settings)


def _directories(ctx: Context, chosen: list[policies.DirectoryPolicy]) -> results.Section:
    named: list[tuple[str, policies.DirectoryPolicy]] = []
    for index, policy in enumerate(chosen):
        name = str(policy.root)
        named.append((name if name not in dict(named) else f"{name} [{index}]", policy))

    def work(
        policy: policies.DirectoryPolicy, partial: Partial[results.SweepSection]
    ) -> results.SweepSection:
        return directories.sweep(
            ctx.conn,
            ctx.settings,
            policy,
            dry_run=ctx.dry_run,
            limits=ctx.limits,
            run_id=ctx.run.id,
            on_progress=partial,
        )

    return each(ctx, "directories", named, work, _sweep_stage)


def orphan_stage(
    only: list[Path] | None = None, sample_size: int = sweeps.SAMPLE_SIZE
) -> Stage[list[Path | str]]:
    """The orphans stage, over every storage root or the `only` ones (`retention
    sweep-orphans --root`), listing `sample_size` files per root; without `only`, also over the
    application storages registered in this process (files/storage_orphans.py)."""

    def check(conn: psycopg.Connection, settings: settings_mod.Settings) -> list[Path | str]:
        found: list[Path | str] = list(orphans.check(conn, settings, only))
        if not only:
            found += storage_orphans.keys(settings)
        return found

    def run(ctx: Context, roots: list[Path | str]) -> results.Section:
        def work(root: Path | str, partial: Partial[results.SweepSection]) -> results.SweepSection:
            if isinstance(root, str):
                return storage_orphans.sweep(
                    ctx.conn,
                    ctx.settings,
                    root,
                    dry_run=ctx.dry_run,
                    limits=ctx.limits,
                    run_id=ctx.run.id,
                    sample_size=sample_size,
                    on_progress=partial,
                )
            return orphans.sweep_root(
                ctx.conn,
                ctx.settings,
                root,
                dry_run=ctx.dry_run,
                limits=ctx.limits,
                run_id=ctx.run.id,
                sample_size=sample_size,
                on_progress=partial,
            )

        named = [
            (f"{policies.STORAGE_PREFIX}{root}" if isinstance(root, str) else str(root), root)
            for root in roots
        ]
        return each(ctx, "orphans", named, work, _sweep_stage)

    return Stage(name="orphans", check=check, run=run)


def jobs_stage(target: Callable[[Context, paths.JobsPath], batches.Target]) -> Stage[None]:
    """A jobs stage walking another target than the prune's (an operator's purge), built with
    the run's context (its id, for an archive writer) and the jobs path the run chose."""

    def run(ctx: Context, checked: None) -> results.Section:
        path = paths.choose(ctx.conn, ctx.settings.jobs_path)
        return walk(ctx, "jobs", target(ctx, path), path)

    return Stage(name="jobs", check=_nothing, run=run)


def purge_archive(ctx: Context) -> archive_writer.Writer | None:
    """A purge archives what it deletes when the [jobs] policy archives."""
    return archive_writer.for_policy(ctx.settings, "jobs", ctx.settings.jobs.archived, ctx.run.id)


STAGES: dict[str, Stage[Any]] = {
    "jobs": Stage(name="jobs", check=_nothing, run=_jobs),
    "tables": Stage(name="tables", check=_check_tables, run=_tables),
    "files": Stage(name="files", check=_check_files, run=_files),
    "directories": Stage(name="directories", check=_check_directories, run=_directories),
    "orphans": orphan_stage(),
}
