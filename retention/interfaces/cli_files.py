"""`retention sweep-orphans`: list, then (with --delete) delete, the files no row references."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from retention import errors
from retention.interfaces import cli_state

if TYPE_CHECKING:
    from retention.engine import results


def sweep_orphans_command(
    delete: Annotated[
        bool, typer.Option("--delete", help="Delete the orphans; without it, only list them.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    root: Annotated[
        list[str] | None,
        typer.Option("--root", help="Only this storage root (or a folder in one); repeatable."),
    ] = None,
    grace: Annotated[
        str | None,
        typer.Option("--grace", help="Files younger than this are kept (default: orphans.grace)."),
    ] = None,
    sample: Annotated[
        int, typer.Option("--sample", min=0, help="How many of the files to list per root.")
    ] = 10,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Files under the tables' storage roots that no row references: a dry run unless --delete."""
    from retention.config import durations
    from retention.files import orphans
    from retention.interfaces import console, report
    from retention.run import runner
    from retention.run import stages as run_stages

    settings = cli_state.state.settings()
    if grace is not None:
        try:
            age = durations.parse_duration(grace)
        except ValueError as exc:
            raise errors.ConfigError(f"--grace: {exc}") from None
        policy = settings.orphans.model_copy(update={"grace": age})
        settings = settings.model_copy(update={"orphans": policy})
    only = orphans.check_only(settings, [Path(r) for r in root]) if root else None
    if not orphans.roots(settings):
        raise errors.ConfigError(orphans.no_roots_message())
    location = cli_state.location(settings)
    cli_state.ensure_migrated(location)

    def sweep(dry_run: bool) -> results.RunSummary:
        return runner.execute(
            settings,
            location,
            stages=["orphans"],
            dry_run=dry_run,
            trigger="cli",
            kind="sweep-orphans",
            extra={"sweep": {"roots": root or [], "grace": grace}},
            custom={"orphans": run_stages.orphan_stage(only, sample_size=sample)},
        )

    if delete and not yes and sys.stdin.isatty():
        preview = _orphans(sweep(True))
        if preview.deleted == 0:
            console.out.print("no orphaned file: nothing to delete")
            return
        question = (
            f"delete {preview.deleted} orphaned file(s) ({report.human_bytes(preview.bytes)})?"
        )
        if not typer.confirm(question):
            console.out.print("cancelled: nothing deleted")
            raise typer.Exit(1)
    summary = sweep(not delete)
    if json_output:
        console.emit_json(summary.to_json())
        return
    report.print_summary(console.out, summary)
    verb = "would delete" if not delete else "deleted"
    for name, section in _orphans(summary).roots.items():
        console.out.print(
            f"{name}: {section.details.get('files', 0)} file(s), "
            f"{section.details.get('referenced_old', 0)} referenced, "
            f"{verb} {section.deleted} ({report.human_bytes(section.bytes)})",
            highlight=False,
            markup=False,
        )
        for path in section.sample:
            console.out.print(f"  {path}", highlight=False, markup=False)
        more = section.deleted - len(section.sample)
        if more > 0:
            console.out.print(f"  ... and {more} more (--sample N lists more)", highlight=False)
        for problem in section.errors:
            console.out.print(f"  failed: {problem}", highlight=False, markup=False)
    if not delete:
        console.out.print(
            "dry run: nothing deleted; add --delete to delete these files", highlight=False
        )


def _orphans(summary: results.RunSummary) -> results.SweepStage:
    from retention.engine import results

    section = summary.section("orphans")
    if not isinstance(section, results.SweepStage):
        raise errors.RunFailed(f"run #{summary.run_id} has no orphans section")
    return section
