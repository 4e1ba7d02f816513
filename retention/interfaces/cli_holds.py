"""`retention hold add | list | release`: legal holds, placed and released by hand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from retention.interfaces import cli_state

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="hold",
    help="Legal holds: jobs and rows that no retention path deletes while held.",
    no_args_is_help=True,
)


@app.command("add")
def add_command(
    job_id: Annotated[
        list[int] | None, typer.Option("--job-id", help="A job's id; repeatable.")
    ] = None,
    queue: Annotated[
        str | None, typer.Option("--queue", help="Every job of the queues this glob matches.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Every job of the tasks this glob matches.")
    ] = None,
    table: Annotated[
        str | None, typer.Option("--table", help="Rows of this [[tables]] policy's table.")
    ] = None,
    key: Annotated[
        list[str] | None, typer.Option("--key", help="A value of the table's key; repeatable.")
    ] = None,
    where: Annotated[
        str | None,
        typer.Option("--where", help="A filter as a policy's `where`: '{\"camera_id\": 3}'."),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (required): a case, a ticket.")
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Expiry: a timestamp, or a duration from now (90d)."),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who places it (default: the OS user).")
    ] = None,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Place a hold and print its id. Nothing is written when an argument is wrong."""
    from retention import holds
    from retention.interfaces import console

    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    with cli_state.migrated_connection(location) as conn:
        hold = holds.add(
            conn,
            settings,
            reason=reason or "",
            job_ids=job_id or (),
            queue=queue,
            task=task,
            table=table,
            keys=key or (),
            where=where,
            until=until,
            by=by,
        )
    if json_output:
        console.emit_json(hold.to_json())
    else:
        console.out.print(str(hold.id), highlight=False)


@app.command("list")
def list_command(
    include_inactive: Annotated[
        bool, typer.Option("--all", help="Released and expired holds too.")
    ] = False,
    json_output: cli_state.JsonOption = False,
) -> None:
    """The active holds (with --all: every hold), newest first."""
    from retention import holds
    from retention.interfaces import console

    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    with cli_state.migrated_connection(location) as conn:
        found = holds.list_holds(conn, include_inactive=include_inactive)
    console.show({"holds": [h.to_json() for h in found]}, json_output, _print_holds)


def _print_holds(out: Console, data: dict[str, Any]) -> None:
    from rich.table import Table

    if not data["holds"]:
        out.print("no holds", highlight=False)
        return
    table = Table("id", "state", "holds", "reason", "placed by", "placed at", "until")
    for hold in data["holds"]:
        table.add_row(
            str(hold["id"]),
            hold["state"],
            hold["names"],
            hold["reason"],
            f"{hold['placed_by']} (role {hold['role']})",
            hold["placed_at"] or "",
            hold["expires_at"] or "",
        )
    out.print(table, highlight=False)


@app.command("release")
def release_command(
    hold_id: Annotated[int, typer.Argument(help="The hold's id (see `retention hold list`).")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who releases it (default: the OS user).")
    ] = None,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Release a hold: what it held is eligible again at the next run."""
    from retention import holds
    from retention.interfaces import console

    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    with cli_state.migrated_connection(location) as conn:
        hold = holds.release(conn, hold_id, by=by)
    if json_output:
        console.emit_json(hold.to_json())
    else:
        console.out.print(f"released hold {hold.id}: {hold.describe()}", highlight=False)
