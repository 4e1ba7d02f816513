"""`retention status`, `metrics`, `db` and `config`: what the ledger, the database and the settings say."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from retention import errors
from retention.interfaces import cli_state


def status_command(
    json_output: cli_state.JsonOption = False,
    limit: Annotated[int, typer.Option("--limit", help="How many recent runs.")] = 10,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="A healthcheck: exit 0 when the last run did not fail and one succeeded within "
            "two schedule periods, else 1; one line says why.",
        ),
    ] = False,
) -> None:
    """Recent runs and the one in progress."""
    from retention.interfaces import console, health, report

    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    if check:
        with cli_state.ledger_connection(location) as conn:
            verdict = health.check(conn, settings)
        if json_output:
            console.emit_json(dataclasses.asdict(verdict))
        else:
            sys.stdout.write(verdict.line() + "\n")
        if not verdict.healthy:
            raise typer.Exit(1)
        return
    with cli_state.ledger_connection(location) as conn:
        data = report.status(conn, settings, limit=limit)
    console.show(data, json_output, report.print_status)


def db_command(
    stop: Annotated[bool, typer.Option("--stop", help="Stop the embedded server.")] = False,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Which database is used and how it was chosen."""
    from retention.embedded import server as embedded
    from retention.interfaces import console
    from retention.pg import database

    settings = cli_state.state.settings()
    if stop:
        where = database.home(settings)
        was_running = embedded.stop(where)
        console.out.print(
            "stopped the embedded server" if was_running else "the embedded server was not running"
        )
        return
    location = cli_state.state.location(settings, start=False)
    data: dict[str, Any] = {"source": location.source}
    if location.source == "embedded":
        assert location.home is not None
        data["chosen"] = "no DATABASE_URL, --database-url or PG* variable is set"
        details = embedded.info(location.home)
        data.update(home=details["home"], data_dir=details["data_dir"], running=details["running"])
        if not details["running"]:
            data["note"] = (
                "the embedded server is not running: every command that needs the database "
                "starts it (and stops it when it is the last one to leave)"
            )
            _show_db(data, json_output)
            return
        data.update(pid=details["pid"], conninfo=details["conninfo"])
        location = dataclasses.replace(location, conninfo=str(details["conninfo"]))
    else:
        data["conninfo"] = location.display
    try:
        with database.connect(location) as conn:
            row = conn.execute("SELECT current_database(), current_user, version()").fetchone()
    except errors.DatabaseUnreachable:
        _show_db(data, json_output)
        raise
    assert row is not None
    data.update(database=row[0], user=row[1], server=row[2])
    _show_db(data, json_output)


def _show_db(data: dict[str, Any], json_output: bool) -> None:
    from retention.interfaces import console

    def show(value: Any) -> str:
        return "yes" if value is True else "no" if value is False else str(value)

    console.emit_pairs(data, json_output, show, ": ")


def config_command(
    reference: Annotated[
        bool, typer.Option("--reference", help="Print the configuration reference (Markdown).")
    ] = False,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Check the settings and show them as they apply (the database password redacted)."""
    from retention.config import reference as reference_mod
    from retention.config import settings as settings_mod
    from retention.interfaces import console

    if reference:
        sys.stdout.write(reference_mod.markdown() + "\n")
        return
    settings = cli_state.state.settings()
    data = settings.public()
    data["config_file"] = str(settings_mod.config_path(cli_state.state.config) or "")
    console.emit_pairs(data, json_output, lambda value: json.dumps(value, default=str), " = ")


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
    from retention.interfaces import metrics

    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    with cli_state.ledger_connection(location) as conn:
        text = metrics.exposition(conn, settings)
    if output:
        metrics.write_atomically(Path(output), text)
    else:
        sys.stdout.write(text)
