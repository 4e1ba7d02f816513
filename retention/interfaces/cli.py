"""The `retention` command.

Exit codes: 0 success; 1 a run failed; 2 bad usage or configuration (nothing ran);
3 the database cannot be reached (connection refused, unknown host, failed authentication,
no such database: nothing ran).
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer

from retention import errors
from retention.interfaces import cli_archive, cli_files, cli_holds, cli_inspect, cli_state

# A command imports what it needs when it runs: `retention --help` loads no database driver,
# no Procrastinate, no settings model and no console. The few names the help text shows are
# written here, and tests/unit/test_cli_startup.py checks them against their sources.
STAGES = ("jobs", "tables", "files", "directories", "orphans")  # retention.run.stages.ORDER
FINAL = ("succeeded", "failed", "cancelled", "aborted")  # retention.jobs.purge.FINAL
UNFINISHED = ("todo", "doing")  # retention.jobs.purge.UNFINISHED
HTTP_VARIABLE = "RETENTION_HTTP"  # retention.interfaces.status_server.ENVIRONMENT_VARIABLE

app = typer.Typer(
    name="retention",
    help="Data retention for Procrastinate applications: old jobs, rows and their files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib import metadata

        typer.echo(metadata.version("procrastinate-retention"))
        raise typer.Exit()


@app.callback()
def main_options(
    config: cli_state.ConfigOption = None,
    database_url: cli_state.DatabaseOption = None,
    app_path: cli_state.AppOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    cli_state.state.config = config
    cli_state.state.database_url = database_url
    cli_state.state.app_path = app_path
    cli_state.state.verbose = verbose
    from retention.interfaces import logs

    logs.configure(verbose=verbose)


@app.command("migrate")
def migrate_command(
    wait: Annotated[
        str,
        typer.Option(
            "--wait",
            help="Longest wait for another migrate, and for the sessions a statement waits for.",
        ),
    ] = "5m",
    json_output: cli_state.JsonOption = False,
) -> None:
    """Apply Procrastinate's schema when missing, then every pending migration."""
    import psycopg

    from retention.config import durations
    from retention.interfaces import console
    from retention.pg import database, migrate

    try:
        bound = durations.parse_duration(wait)
    except ValueError as exc:
        raise errors.ConfigError(f"--wait: {exc}") from None
    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    with database.connect(location) as conn:
        try:
            result = migrate.apply(conn, wait=bound)
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidSchemaName) as exc:
            raise errors.DatabaseError(
                f"retention migrate needs a role that may create tables and indexes (the owner of "
                f"the Procrastinate tables): {exc}"
            ) from None
    if json_output:
        console.emit_json(
            {
                "procrastinate_schema_applied": result.procrastinate_schema_applied,
                "applied": result.applied,
                "already": result.already,
            }
        )
        return
    if result.procrastinate_schema_applied:
        console.out.print("applied the Procrastinate schema")
    for name in result.applied:
        console.out.print(f"applied {name}")
    if not result.applied and not result.procrastinate_schema_applied:
        console.out.print("the database is up to date")


@app.command("run")
def run_command(
    dry_run: cli_state.DryRunOption = False,
    json_output: cli_state.JsonOption = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help=f"Only these stages ({', '.join(STAGES)}); repeatable."),
    ] = None,
) -> None:
    """Run the configured retention now, in this process."""
    from retention.interfaces import console
    from retention.run import runner

    settings = cli_state.state.settings()
    stages = runner.enabled_stages(settings, only)
    location = cli_state.location(settings)
    cli_state.ensure_migrated(location)
    with console.progress(not json_output) as hook:
        summary = runner.execute(
            settings, location, stages=stages, dry_run=dry_run, trigger="cli", hook=hook
        )
    console.show_summary(summary, json_output)


@app.command("plan")
def plan_command(json_output: cli_state.JsonOption = False) -> None:
    """Preview everything configured: a dry run of every stage."""
    from retention.interfaces import console
    from retention.run import runner

    settings = cli_state.state.settings()
    stages = runner.enabled_stages(settings, None)
    location = cli_state.location(settings)
    cli_state.ensure_migrated(location)
    summary = runner.execute(settings, location, stages=stages, dry_run=True, trigger="cli")
    console.show_summary(summary, json_output)


@app.command("purge")
def purge_command(
    job_id: Annotated[
        list[int] | None, typer.Option("--job-id", help="A job id; repeatable.")
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Glob on the queue name.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Glob on the task name.")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help=f"A final status: {', '.join(FINAL)}; repeatable.",
        ),
    ] = None,
    finished_before: Annotated[
        str | None,
        typer.Option("--finished-before", help="A timestamp, or a duration ago (30d, 72h)."),
    ] = None,
    dry_run: cli_state.DryRunOption = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Delete chosen finished jobs now. Filters intersect; todo and doing jobs are refused."""
    from retention.interfaces import console
    from retention.jobs import purge
    from retention.run import runner

    check_statuses(status)
    check_globs(queue=queue, task=task)
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
    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    cli_state.ensure_migrated(location)
    if not dry_run and not yes and sys.stdin.isatty():
        preview = runner.purge(settings, location, filters, dry_run=True, trigger="cli")
        section = preview.section("jobs")
        count = section.deleted if section is not None else 0
        if count == 0:
            console.out.print("no job matches: nothing to delete")
            return
        if not typer.confirm(f"delete {count} job(s) and their events?"):
            console.out.print("cancelled: nothing deleted")
            raise typer.Exit(1)
    summary = runner.purge(settings, location, filters, dry_run=dry_run, trigger="cli")
    console.show_summary(summary, json_output)


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
    config_path: Annotated[
        bool,
        typer.Option(
            "--config-path",
            help="Print the path of the config the demo wrote for this database, run nothing.",
        ),
    ] = False,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Seed a home-security demo application, show the plan, run retention, show what went."""
    from retention.demo import demo
    from retention.interfaces import console, demo_view

    if config_path:
        if reset or delete_images:
            raise errors.ConfigError(
                "--config-path prints the demo's config path and runs nothing: give it without "
                "--reset and --delete-images"
            )
        settings = cli_state.state.settings()
        path = demo.written_config(settings, cli_state.state.location(settings, start=False))
        if json_output:
            console.emit_json({"config": str(path)})
        else:
            typer.echo(str(path))
        return
    delete_images = delete_images or demo.delete_images_from_env()
    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    result = demo.run(
        settings,
        location,
        delete_images=delete_images,
        reset=reset,
        view=None if json_output else demo_view.ConsoleView(console.out),
    )
    if json_output:
        console.emit_json(result)


@app.command("worker")
def worker_command(
    one_shot: Annotated[
        bool, typer.Option("--one-shot", help="Run the retention jobs queued now, then exit.")
    ] = False,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            envvar=HTTP_VARIABLE,
            metavar="[HOST:]PORT",
            help="Also serve /healthz, /metrics and /status over HTTP, read-only, on this port "
            "(of 127.0.0.1 unless HOST is given); off by default.",
        ),
    ] = None,
) -> None:
    """Run a Procrastinate worker for the retention queue: the periodic schedule, deferred
    retention tasks, the delete_jobs policy. SIGTERM or Ctrl-C stops it (a run in progress stops
    between two batches, recorded as aborted)."""
    from retention.interfaces import logs, status_server

    address = status_server.parse_address(http) if http else None
    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    cli_state.ensure_migrated(location)
    level = logging.DEBUG if cli_state.state.verbose else logging.INFO
    ours, theirs = logging.getLogger("retention"), logging.getLogger("procrastinate")
    ours.setLevel(level)
    theirs.setLevel(level)
    for handler in ours.handlers:
        theirs.addHandler(handler)
    logs.shorten_run_results()
    from retention.interfaces import (
        application,  # procrastinate's worker: loaded for this command only
    )

    worker_app = application.build(settings, location)
    with status_server.serving(address, settings, location):
        if one_shot:
            worker_app.run_worker(wait=False)
        else:
            worker_app.run_worker()


app.command("status")(cli_inspect.status_command)
app.command("db")(cli_inspect.db_command)
app.command("config")(cli_inspect.config_command)
app.command("metrics")(cli_inspect.metrics_command)
app.command("sweep-orphans")(cli_files.sweep_orphans_command)
app.add_typer(cli_holds.app, name="hold")
app.add_typer(cli_archive.app, name="archive")


FINAL_STATUSES = ", ".join(FINAL)


def check_statuses(statuses: list[str] | None) -> None:
    """--status values are checked before any database is located (or started)."""
    for status in statuses or ():
        if status in UNFINISHED:
            raise errors.ConfigError(
                f"--status {status}: {status} jobs are not finished and are never deleted; "
                f"cancel them first (procrastinate cancel), or use one of {FINAL_STATUSES}"
            )
        if status not in FINAL:
            raise errors.ConfigError(
                f"--status {status}: unknown status; use one of {FINAL_STATUSES}"
            )


def check_globs(**named: str | None) -> None:
    """--queue and --task globs are checked before any database is located (or started)."""
    from retention.config import globs

    for name, glob in named.items():
        if glob is None:
            continue
        try:
            globs.to_regex(glob)
        except ValueError as exc:
            raise errors.ConfigError(f"--{name} {glob!r}: {exc}") from None


def honest_flags(command: Any) -> Any:
    """Show on/off options without a value type: Typer's help prints `--dry-run <bool>` for a
    flag that takes no value (and refuses `--dry-run true`)."""
    params = [*command.params, command.get_help_option(command.context_class(command))]
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        honest_flags(sub)
    return command


def _print_error(message: str) -> None:
    from retention.config import dsn
    from retention.interfaces import console

    console.err.print(f"error: {dsn.redact(message)}", highlight=False, markup=False)


def main() -> None:
    try:
        code = honest_flags(typer.main.get_command(app)).main(standalone_mode=False)
    except errors.RetentionError as exc:
        _print_error(str(exc))
        sys.exit(exc.exit_code)
    except typer.Abort:
        from retention.interfaces import console

        console.err.print("aborted")
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if code is not None and callable(show):
            show()
            sys.exit(code)
        _print_error(str(exc))
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
