"""`retention archive list | verify | restore`: the files archived before delete, their check
against the ledger, and putting their rows back."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from retention import errors
from retention.interfaces import cli_state

if TYPE_CHECKING:
    from rich.console import Console

    from retention.config import settings as settings_mod

app = typer.Typer(
    name="archive",
    help="Archive before delete: the files written, their check, restoring their rows.",
    no_args_is_help=True,
)


def _root(settings: settings_mod.Settings) -> Path:
    if settings.archive.root is None:
        raise errors.ConfigError(
            "archive.root is not set: set [archive] root to the archive's directory "
            "(e.g. /var/lib/app/retention-archive)"
        )
    return Path(settings.archive.root)


@app.command("list")
def list_command(
    run_id: Annotated[int | None, typer.Option("--run", help="Only this run's files.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest files shown.")] = 100,
    json_output: cli_state.JsonOption = False,
) -> None:
    """The archive files the ledger records (path under the root, rows, bytes, sha256), newest
    first; then the copies of deleted rows' files (archive_files: the original path, the copy's
    path under the root, bytes, sha256)."""
    from retention.archive import store
    from retention.interfaces import console

    settings = cli_state.state.settings()
    location = cli_state.location(settings)
    with cli_state.migrated_connection(location) as conn:
        found = store.recorded(conn, run_id=run_id, limit=limit)
        copied = store.copies(conn, run_id=run_id, limit=limit)
    console.show(
        {"files": [f.to_json() for f in found], "copies": [c.to_json() for c in copied]},
        json_output,
        _print_files,
    )


def _print_files(out: Console, data: dict[str, Any]) -> None:
    from rich.table import Table

    if not data["files"] and not data["copies"]:
        out.print("no archive files", highlight=False)
        return
    if data["copies"]:
        copies = Table("run", "root", "path", "copy", "bytes", "sha256", "archived at")
        for c in data["copies"]:
            copies.add_row(
                str(c["run_id"]),
                c["root"],
                c["path"],
                c["archive_path"],
                str(c["bytes"]),
                c["sha256"],
                c["archived_at"],
            )
    if not data["files"]:
        out.print("no archive files of rows", highlight=False)
        out.print(copies, markup=False, highlight=False)
        return
    table = Table("run", "target", "path", "rows", "bytes", "sha256", "written at")
    for f in data["files"]:
        table.add_row(
            str(f["run_id"]),
            f["target"],
            f["path"],
            str(f["rows"]),
            str(f["bytes"]),
            f["sha256"],
            f["written_at"],
        )
    out.print(table, markup=False, highlight=False)
    if data["copies"]:
        out.print("copies of deleted rows' files (archive_files):", highlight=False)
        out.print(copies, markup=False, highlight=False)


@app.command("verify")
def verify_command(
    root: Annotated[
        Path | None,
        typer.Option("--root", help="The archive's directory (default: [archive] root)."),
    ] = None,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Check every recorded file against the ledger (present, size, sha256, row count), and every
    recorded copy of a deleted row's file (present, size, sha256); list the files under the root
    the ledger does not record (a batch that did not commit: its rows were not deleted; a copy
    whose drain was killed before recording it: its file was not unlinked). Exits 1 when a
    recorded file or copy fails its check."""
    from retention.archive import store
    from retention.interfaces import console

    settings = cli_state.state.settings()
    root = root if root is not None else _root(settings)
    location = cli_state.location(settings)
    with cli_state.migrated_connection(location) as conn:
        checks, unrecorded = store.verify(conn, root)
        copies, unrecorded_copies = store.verify_copies(conn, root)
    data = {
        "checked": len(checks) + len(copies),
        "copies_checked": len(copies),
        "failed": [{"path": c.path, "problem": c.problem} for c in [*checks, *copies] if not c.ok],
        "unrecorded": unrecorded,
        "unrecorded_copies": unrecorded_copies,
    }
    console.show(data, json_output, _print_verify)
    if data["failed"]:
        raise typer.Exit(1)


def _print_verify(out: Console, data: dict[str, Any]) -> None:
    copies = f" ({data['copies_checked']} copies of deleted rows' files)"
    out.print(
        f"{data['checked']} files checked{copies if data['copies_checked'] else ''}, "
        f"{len(data['failed'])} failed",
        highlight=False,
    )
    for failed in data["failed"]:
        out.print(f"FAILED {failed['path']}: {failed['problem']}", markup=False, highlight=False)
    for path in data["unrecorded"]:
        out.print(
            f"unrecorded {path}: its batch did not commit (rows not deleted)",
            markup=False,
            highlight=False,
        )
    for path in data["unrecorded_copies"]:
        out.print(
            f"unrecorded copy {path}: its drain stopped before recording it (file not deleted)",
            markup=False,
            highlight=False,
        )


@app.command("restore")
def restore_command(
    files: Annotated[
        list[Path], typer.Argument(help="Archive files: paths, or paths under the root.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be restored, insert nothing.")
    ] = False,
    json_output: cli_state.JsonOption = False,
) -> None:
    """Re-insert the rows of archive files (jobs with their events, same ids; table rows before
    their children's), in one transaction; a row whose primary key exists is refused."""
    from retention.archive import restore
    from retention.interfaces import console

    settings = cli_state.state.settings()
    root = settings.archive.root
    paths: list[Path] = []
    for given in files:
        found = given if given.is_file() else (Path(root) / given if root else given)
        if not found.is_file():
            raise errors.ConfigError(f"archive file {str(given)!r} does not exist")
        paths.append(found)
    location = cli_state.location(settings)
    with cli_state.migrated_connection(location) as conn:
        done = restore.restore(conn, paths, dry_run=dry_run)
    console.show(done.to_json(), json_output, _print_restore)


def _print_restore(out: Console, data: dict[str, Any]) -> None:
    verb = "would insert" if data["dry_run"] else "inserted"
    tables = sorted({*data["inserted"], *data["refused"]})
    if not tables:
        out.print("no rows", highlight=False)
    for name in tables:
        out.print(
            f"{name}: {verb} {data['inserted'].get(name, 0)}, refused (key exists) "
            f"{data['refused'].get(name, 0)}",
            markup=False,
            highlight=False,
        )
