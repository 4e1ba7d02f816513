"""The `retention` command. Exit codes: 0 success, 1 a run failed, 2 bad usage or config."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from retention import errors
from retention.config import dsn, durations
from retention.config import reference as reference_mod
from retention.config import settings as settings_mod
from retention.demo import demo
from retention.embedded import server as embedded
from retention.engine import ledger, results
from retention.files import orphans
from retention.interfaces import demo_view, logs, metrics, report
from retention.jobs import purge
from retention.pg import database, migrate
from retention.run import runner
from retention.run import stages as run_stages

app = typer.Typer(
    name="retention",
    help="Data retention for Procrastinate applications: old jobs, rows and their files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Everything printed may hold data (names, paths, errors): no console reads markup.
out = Console(markup=False) if sys.stdout.isatty() else Console(width=160, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)


class State:
    config: str | None = None
    database_url: str | None = None
    verbose: bool = False

    def settings(self) -> settings_mod.Settings:
        overrides: dict[str, Any] = {}
        if self.database_url:
            overrides["database_url"] = self.database_url
        return settings_mod.load(self.config, **overrides)


state = State()

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (else RETENTION_CONFIG, ./retention.toml)."
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="libpq URL of the database (else DATABASE_URL, PG*, embedded)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")
]


def _print_version(value: bool) -> None:
    if value:
        from importlib import metadata

        typer.echo(metadata.version("procrastinate-retention"))
        raise typer.Exit()


@app.callback()
def main_options(
    config: ConfigOption = None,
    database_url: DatabaseOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    state.config = config
    state.database_url = database_url
    state.verbose = verbose
    logs.configure(verbose=verbose)


def _location(settings: settings_mod.Settings) -> database.Location:
    return database.locate(settings)


def ensure_migrated(location: database.Location) -> None:
    """The embedded database is brought up to date; any other must have run `retention migrate`."""
    with database.connect(location) as conn:
        missing = migrate.pending(conn)
        if not missing:
            return
        if location.source == "embedded":
            migrate.apply(conn)
            return
    raise errors.DatabaseError(
        f"the database is not migrated (pending: {', '.join(missing)}): run `retention migrate` "
        "first, with a role that may create tables and indexes"
    )


@contextlib.contextmanager
def _ledger_connection(location: database.Location) -> Iterator[psycopg.Connection]:
    """A connection to a migrated database whose ledger no longer shows killed runs as running."""
    ensure_migrated(location)
    with database.connect(location) as conn:
        ledger.abandon_dead(conn)
        yield conn


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _show(
    data: dict[str, Any], json_output: bool, printer: Callable[[Console, dict[str, Any]], None]
) -> None:
    """JSON for scripts, or the human rendering."""
    if json_output:
        _emit_json(data)
    else:
        printer(out, data)


def _show_summary(summary: results.RunSummary, json_output: bool) -> None:
    """A run's summary as JSON (the documented shape), or as the table people read."""
    if json_output:
        _emit_json(summary.to_json())
    else:
        report.print_summary(out, summary)


def _emit_pairs(
    data: dict[str, Any], json_output: bool, show: Callable[[Any], str], separator: str
) -> None:
    """A mapping as JSON, or as one `key<separator>value` line per key."""
    if json_output:
        _emit_json(data)
        return
    for key, value in data.items():
        out.print(Text.assemble((key, "bold"), separator, show(value)), highlight=False)


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator[runner.ProgressHook | None]:
    if not (enabled and out.is_terminal):
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def hook(stage: str, fraction: float | None, section: results.Section | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=100)
            deleted = section.deleted if section is not None else 0
            bar.update(
                tasks[stage],
                completed=100 * (fraction or 0.0),
                description=f"{stage} ({deleted} so far)",
            )

        yield hook


@app.command("migrate")
def migrate_command(
    wait: Annotated[
        str,
        typer.Option(
            "--wait",
            help="Longest wait for another migrate, and for the sessions a statement waits for.",
        ),
    ] = "5m",
    json_output: JsonOption = False,
) -> None:
    """Apply Procrastinate's schema when missing, then every pending migration."""
    try:
        bound = durations.parse_duration(wait)
    except ValueError as exc:
        raise errors.ConfigError(f"--wait: {exc}") from None
    settings = state.settings()
    location = _location(settings)
    with database.connect(location) as conn:
        try:
            result = migrate.apply(conn, wait=bound)
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidSchemaName) as exc:
            raise errors.DatabaseError(
                f"retention migrate needs a role that may create tables and indexes (the owner of "
                f"the Procrastinate tables): {exc}"
            ) from None
    if json_output:
        _emit_json(
            {
                "procrastinate_schema_applied": result.procrastinate_schema_applied,
                "applied": result.applied,
                "already": result.already,
            }
        )
        return
    if result.procrastinate_schema_applied:
        out.print("applied the Procrastinate schema")
    for name in result.applied:
        out.print(f"applied {name}")
    if not result.applied and not result.procrastinate_schema_applied:
        out.print("the database is up to date")


@app.command("run")
def run_command(
    dry_run: DryRunOption = False,
    json_output: JsonOption = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help=f"Only these stages ({', '.join(runner.ORDER)}); repeatable."),
    ] = None,
) -> None:
    """Run the configured retention now, in this process."""
    settings = state.settings()
    stages = runner.enabled_stages(settings, only)
    location = _location(settings)
    ensure_migrated(location)
    with _progress(not json_output) as hook:
        summary = runner.execute(
            settings, location, stages=stages, dry_run=dry_run, trigger="cli", hook=hook
        )
    _show_summary(summary, json_output)


@app.command("plan")
def plan_command(json_output: JsonOption = False) -> None:
    """Preview everything configured: a dry run of every stage."""
    settings = state.settings()
    stages = runner.enabled_stages(settings, None)
    location = _location(settings)
    ensure_migrated(location)
    summary = runner.execute(settings, location, stages=stages, dry_run=True, trigger="cli")
    _show_summary(summary, json_output)


@app.command("purge")
def purge_command(
    job_id: Annotated[
        list[int] | None, typer.Option("--job-id", help="A job id; repeatable.")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Glob on the queue name.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Glob on the task name.")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="A final status; repeatable.")
    ] = None,
    finished_before: Annotated[
        str | None,
        typer.Option("--finished-before", help="A timestamp, or a duration ago (30d, 72h)."),
    ] = None,
    dry_run: DryRunOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Delete chosen finished jobs now. Filters intersect; todo and doing jobs are refused."""
    filters = purge.PurgeFilters.parse(
        job_ids=job_id,
        queue=queue,
        task=task,
        statuses=status,
        finished_before=finished_before,
        finished_before_name="--finished-before",
    )
    if filters.empty:
        raise errors.ConfigError(
            "purge needs at least one filter: --job-id, --queue, --task, --status or "
            "--finished-before"
        )
    settings = state.settings()
    location = _location(settings)
    ensure_migrated(location)
    if not dry_run and not yes and sys.stdin.isatty():
        preview = runner.purge(settings, location, filters, dry_run=True, trigger="cli")
        section = preview.section("jobs")
        count = section.deleted if section is not None else 0
        if count == 0:
            out.print("no job matches: nothing to delete")
            return
        if not typer.confirm(f"delete {count} job(s) and their events?"):
            out.print("cancelled: nothing deleted")
            raise typer.Exit(1)
    summary = runner.purge(settings, location, filters, dry_run=dry_run, trigger="cli")
    _show_summary(summary, json_output)


@app.command("status")
def status_command(
    json_output: JsonOption = False,
    limit: Annotated[int, typer.Option("--limit", help="How many recent runs.")] = 10,
) -> None:
    """Recent runs and the one in progress."""
    settings = state.settings()
    location = _location(settings)
    with _ledger_connection(location) as conn:
        data = report.status(conn, settings, limit=limit)
    _show(data, json_output, report.print_status)


@app.command("demo")
def demo_command(
    delete_images: Annotated[
        bool,
        typer.Option(
            "--delete-images",
            help="Also delete the original images of deleted detections (default: kept; "
            "env DELETE_IMAGES=1).",
        ),
    ] = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Drop the demo's data and files, then seed them again.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Seed a home-security demo application, show the plan, run retention, show what went."""
    delete_images = delete_images or demo.delete_images_from_env()
    settings = state.settings()
    location = _location(settings)
    result = demo.run(
        settings,
        location,
        delete_images=delete_images,
        reset=reset,
        view=None if json_output else demo_view.ConsoleView(out),
    )
    if json_output:
        _emit_json(result)


@app.command("db")
def db_command(
    stop: Annotated[bool, typer.Option("--stop", help="Stop the embedded server.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Which database is used and how it was chosen."""
    settings = state.settings()
    if stop:
        where = database.home(settings)
        was_running = embedded.stop(where)
        out.print(
            "stopped the embedded server" if was_running else "the embedded server was not running"
        )
        return
    location = database.locate(settings, start=False)
    data: dict[str, Any] = {"source": location.source, "conninfo": location.display}
    if location.source == "embedded":
        assert location.home is not None
        data["embedded"] = {k: str(v) for k, v in embedded.info(location.home).items()}
    else:
        try:
            with database.connect(location) as conn:
                row = conn.execute("SELECT current_database(), current_user, version()").fetchone()
            assert row is not None
            data.update(database=row[0], user=row[1], server=row[2])
        except errors.DatabaseError as exc:
            data["error"] = str(exc)
    _emit_pairs(data, json_output, str, ": ")


@app.command("config")
def config_command(
    reference: Annotated[
        bool, typer.Option("--reference", help="Print the configuration reference (Markdown).")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Check the settings and show them as they apply (the database password redacted)."""
    if reference:
        sys.stdout.write(reference_mod.markdown() + "\n")
        return
    settings = state.settings()
    data = settings.public()
    data["config_file"] = str(settings_mod.config_path(state.config) or "")
    _emit_pairs(data, json_output, lambda value: json.dumps(value, default=str), " = ")


@app.command("worker")
def worker_command(
    one_shot: Annotated[
        bool, typer.Option("--one-shot", help="Run the retention jobs queued now, then exit.")
    ] = False,
) -> None:
    """Run a Procrastinate worker for the retention queue: the periodic schedule, deferred
    retention tasks, the delete_jobs policy. SIGTERM or Ctrl-C stops it (a run in progress stops
    between two batches, recorded as aborted)."""
    settings = state.settings()
    location = _location(settings)
    ensure_migrated(location)
    level = logging.DEBUG if state.verbose else logging.INFO
    ours, theirs = logging.getLogger("retention"), logging.getLogger("procrastinate")
    ours.setLevel(level)
    theirs.setLevel(level)
    for handler in ours.handlers:
        theirs.addHandler(handler)
    from retention.interfaces import (
        application,  # procrastinate's worker: loaded for this command only
    )

    worker_app = application.build(settings, location)
    if one_shot:
        worker_app.run_worker(wait=False)
    else:
        worker_app.run_worker()


@app.command("metrics")
def metrics_command(
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file atomically (e.g. node_exporter's textfile directory, "
            "retention.prom) instead of printing.",
        ),
    ] = None,
) -> None:
    """Prometheus metrics: the last run, failures, the file outbox, the backlog per policy."""
    settings = state.settings()
    location = _location(settings)
    with _ledger_connection(location) as conn:
        text = metrics.exposition(conn, settings)
    if output:
        metrics.write_atomically(Path(output), text)
    else:
        sys.stdout.write(text)


@app.command("sweep-orphans")
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
    json_output: JsonOption = False,
) -> None:
    """Files under the tables' storage roots that no row references: a dry run unless --delete."""
    settings = state.settings()
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
    location = _location(settings)
    ensure_migrated(location)

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
            out.print("no orphaned file: nothing to delete")
            return
        question = (
            f"delete {preview.deleted} orphaned file(s) ({report.human_bytes(preview.bytes)})?"
        )
        if not typer.confirm(question):
            out.print("cancelled: nothing deleted")
            raise typer.Exit(1)
    summary = sweep(not delete)
    if json_output:
        _emit_json(summary.to_json())
        return
    report.print_summary(out, summary)
    verb = "would delete" if not delete else "deleted"
    for name, section in _orphans(summary).roots.items():
        out.print(
            f"{name}: {section.details.get('files', 0)} file(s), "
            f"{section.details.get('referenced_old', 0)} referenced, "
            f"{verb} {section.deleted} ({report.human_bytes(section.bytes)})",
            highlight=False,
            markup=False,
        )
        for path in section.sample:
            out.print(f"  {path}", highlight=False, markup=False)
        more = section.deleted - len(section.sample)
        if more > 0:
            out.print(f"  ... and {more} more (--sample N lists more)", highlight=False)
        for problem in section.errors:
            out.print(f"  failed: {problem}", highlight=False, markup=False)
    if not delete:
        out.print("dry run: nothing deleted; add --delete to delete these files", highlight=False)


def _orphans(summary: results.RunSummary) -> results.SweepStage:
    section = summary.section("orphans")
    if not isinstance(section, results.SweepStage):
        raise errors.RunFailed(f"run #{summary.run_id} has no orphans section")
    return section


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except errors.RetentionError as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if code is not None and callable(show):
            show()
            sys.exit(code)
        err.print(f"error: {dsn.redact(str(exc))}", highlight=False, markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
