"""What the `retention` command prints: its two consoles (never reading markup: everything may
hold data), JSON for scripts, tables for people, the progress bar."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from retention.engine import results
from retention.interfaces import report
from retention.run import stages

# Everything printed may hold data (names, paths, errors): no console reads markup.
out = Console(markup=False) if sys.stdout.isatty() else Console(width=160, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def show(
    data: dict[str, Any], json_output: bool, printer: Callable[[Console, dict[str, Any]], None]
) -> None:
    """JSON for scripts, or the human rendering."""
    if json_output:
        emit_json(data)
    else:
        printer(out, data)


def show_summary(summary: results.RunSummary, json_output: bool) -> None:
    """A run's summary as JSON (the documented shape), or as the table people read."""
    if json_output:
        emit_json(summary.to_json())
    else:
        report.print_summary(out, summary)


def emit_pairs(
    data: dict[str, Any], json_output: bool, show: Callable[[Any], str], separator: str
) -> None:
    """A mapping as JSON, or as one `key<separator>value` line per key."""
    if json_output:
        emit_json(data)
        return
    for key, value in data.items():
        out.print(Text.assemble((key, "bold"), separator, show(value)), highlight=False)


@contextlib.contextmanager
def progress(enabled: bool) -> Iterator[stages.ProgressHook | None]:
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
