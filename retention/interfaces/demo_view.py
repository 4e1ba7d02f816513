"""How `retention demo` shows its steps: the policies, the plan, the run, what went."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from retention.config import durations, policies
from retention.config import settings as settings_mod
from retention.demo import demo
from retention.engine import results
from retention.interfaces import report


class ConsoleView:
    """The demo's steps printed on a Rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def intro(self, result: dict[str, Any], settings: settings_mod.Settings) -> None:
        _print_intro(self.console, result, settings)

    def plan(self, summary: results.RunSummary) -> None:
        report.print_summary(self.console, summary)
        _print_plan_note(self.console, summary)

    def done(self, summary: results.RunSummary) -> None:
        report.print_summary(self.console, summary)

    def outcome(self, result: dict[str, Any]) -> None:
        _print_outcome(self.console, result)


def _print_intro(console: Console, result: dict[str, Any], settings: settings_mod.Settings) -> None:
    console.print(
        Text.assemble(
            ("retention demo", "bold"),
            f": a home-security application, schema {demo.SCHEMA} in "
            f"{result['database']} ({result['source']})",
        ),
        highlight=False,
    )
    if result["seeded"]:
        console.print("seeded 90 days of events, detections, GPU stats, logs and jobs just now")
    else:
        seeded_at = (result["seeded_at"] or "")[:19].replace("T", " ")
        console.print(
            f"reusing the data seeded at {seeded_at} (`retention demo --reset` seeds it again)",
            highlight=False,
        )
    days, log_days = settings.retention_days, settings.log_retention_days
    jobs = ", ".join(
        f"{status} {_age(getattr(settings.jobs, status))}" for status in policies.FINAL_STATUSES
    )
    images = (
        "deleted with their detections"
        if result["delete_images"]
        else "kept (--delete-images deletes them with their detections)"
    )
    console.print(f"policies ({result['config']}):", highlight=False)
    for line in (
        f"events, with their detections and thumbnails: older than {days} days (RETENTION_DAYS)",
        f"original images: {images}",
        f"gpu_stats: older than {days} days (RETENTION_DAYS)",
        f"logs: older than {log_days} days (LOG_RETENTION_DAYS)",
        f"jobs, by how long ago they finished: {jobs}; todo and doing jobs never",
    ):
        console.print(f"  {line}", highlight=False)


def _print_plan_note(console: Console, plan: results.RunSummary) -> None:
    tables = plan.section("tables")
    queued = (
        sum(section.files_queued for section in tables.tables.values())
        if isinstance(tables, results.TablesStage)
        else 0
    )
    if queued:
        console.print(
            f"files are deleted once their rows are gone: the run queues {queued} file(s) "
            "(files_queued above), then deletes them",
            highlight=False,
        )


def _age(value: dt.timedelta | None) -> str:
    return durations.format_duration(value) if value is not None else "forever"


def _print_outcome(console: Console, result: dict[str, Any]) -> None:
    before, after = result["before"], result["after"]
    table = Table(title="the demo's data, before and after")
    for column in ("what", "before", "after", "gone", "oldest left"):
        table.add_column(column, justify="left" if column in ("what", "oldest left") else "right")
    statuses = sorted(set(before["jobs"]) | set(after["jobs"]))
    for status in statuses:
        was = before["jobs"].get(status, {}).get("jobs", 0)
        now = after["jobs"].get(status, {})
        table.add_row(
            f"jobs {status}",
            str(was),
            str(now.get("jobs", 0)),
            str(was - now.get("jobs", 0)),
            _day(now.get("oldest")),
        )
    for name in demo.TABLES:
        was = before["tables"].get(name, {}).get("rows", 0)
        now = after["tables"].get(name, {})
        table.add_row(
            f"table {name}",
            str(was),
            str(now.get("rows", 0)),
            str(was - now.get("rows", 0)),
            _day(now.get("oldest")),
        )
    for root in demo.ROOTS:
        was, now = before["files"][root], after["files"][root]
        table.add_row(
            f"{root} (files)",
            f"{was['files']} ({report.human_bytes(was['bytes'])})",
            f"{now['files']} ({report.human_bytes(now['bytes'])})",
            f"{was['files'] - now['files']} ({report.human_bytes(was['bytes'] - now['bytes'])})",
            "",
        )
    console.print(table)
    gone = before["files"]["thumbnails"]["files"] - after["files"]["thumbnails"]["files"]
    kept = "" if result["delete_images"] else "; original images kept"
    console.print(
        f"space reclaimed on disk: {report.human_bytes(result['reclaimed_bytes'])} "
        f"({gone} thumbnail(s){'' if kept else ' and their images'}){kept}; "
        f"files under {result['files_dir']}",
        highlight=False,
    )
    images_gone = before["files"]["images"]["files"] - after["files"]["images"]["files"]
    if result["delete_images"] and not result["seeded"] and images_gone == 0:
        console.print(
            "--delete-images deleted no image: the detections an earlier demo run deleted took "
            "their rows with them, so no row is left to say which images were theirs; "
            "`retention demo --reset --delete-images` seeds again and shows the full effect "
            f"(an image left behind so is an orphan: `retention --config {result['config']} "
            "sweep-orphans --delete` deletes it)",
            highlight=False,
        )
    config = result["config"]
    console.print("next:")
    for command, what in (
        ("retention status", "the runs, from the ledger"),
        (f"retention --config {config} plan", "preview the demo's policies again"),
        (
            f"retention --config {config} sweep-orphans",
            "list the files no row references (thumbnails/unsorted)",
        ),
    ):
        console.print(Text.assemble(f"  {command}  ", (f"# {what}", "dim")), highlight=False)


def _day(value: str | None) -> str:
    return value[:10] if value else ""
