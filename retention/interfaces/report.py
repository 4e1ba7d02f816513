"""What runs show people: Rich tables of a run's summary and of `retention status`."""

from __future__ import annotations

from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from retention.config import settings as settings_mod
from retention.engine import ledger
from retention.files import outbox
from retention.run import backlog


def human_bytes(count: int | float | None) -> str:
    value = float(count or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def deleted_counts(summary: dict[str, Any]) -> dict[str, int]:
    """Per target, what a run deleted (or would delete): jobs, each table, files."""
    counts: dict[str, int] = {}
    section = summary.get("jobs")
    if isinstance(section, dict):
        counts["jobs"] = int(section.get("deleted", 0))
    for name, table in (summary.get("tables") or {}).items():
        if isinstance(table, dict):
            counts[f"table:{name}"] = int(table.get("deleted", 0))
    files = summary.get("files")
    if isinstance(files, dict):
        counts["files"] = int(files.get("deleted", 0))
    for key in ("directories", "orphans"):
        section = summary.get(key)
        if isinstance(section, dict):
            counts[key] = int(section.get("deleted", 0))
    return counts


def reclaimed_bytes(summary: dict[str, Any]) -> int:
    return sum(
        int(summary.get(key, {}).get("bytes", 0) or 0)
        for key in ("files", "directories", "orphans")
        if isinstance(summary.get(key), dict)
    )


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    verb = "would delete" if summary.get("dry_run") else "deleted"
    title = f"run #{summary.get('run_id')} ({summary.get('kind', 'run')})"
    if summary.get("dry_run"):
        title += ": dry run, nothing deleted"
    table = Table(title=title)
    table.add_column("target")
    table.add_column(verb, justify="right")
    table.add_column("details")
    jobs = summary.get("jobs")
    if isinstance(jobs, dict):
        by_status = jobs.get("by", {}).get("status", {})
        detail = ", ".join(f"{k}: {v}" for k, v in by_status.items())
        if jobs.get("events"):
            detail += f"; {jobs['events']} events"
        if jobs.get("oldest"):
            detail += f"; oldest finished {jobs['oldest']}"
        for group in ("queue", "task"):
            counts = jobs.get("by", {}).get(group, {})
            top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            if top:
                more = f" and {len(top) - 3} more" if len(top) > 3 else ""
                detail += f"; by {group}: " + ", ".join(f"{k}: {v}" for k, v in top[:3]) + more
        if summary.get("dry_run") and jobs.get("samples"):
            detail += "; e.g. " + ", ".join(f"#{job_id}" for job_id in jobs["samples"])
        table.add_row("jobs", str(jobs.get("deleted", 0)), detail)
    for name, section in (summary.get("tables") or {}).items():
        if not isinstance(section, dict):
            continue
        detail = ", ".join(
            f"{key}: {section[key]}"
            for key in ("child_rows", "partitions_dropped", "files_queued")
            if section.get(key)
        )
        table.add_row(f"table {name}", str(section.get("deleted", 0)), detail)
    for key in ("files", "directories", "orphans"):
        section = summary.get(key)
        if isinstance(section, dict):
            detail = f"{human_bytes(section.get('bytes'))}"
            if section.get("failed"):
                detail += f", {section['failed']} failed"
            if section.get("pending"):
                detail += f", {section['pending']} pending"
            table.add_row(key, str(section.get("deleted", 0)), detail)
    console.print(table)
    line = f"status: {summary.get('status')} in {summary.get('seconds', 0)} s"
    reclaimed = reclaimed_bytes(summary)
    if reclaimed:
        verb = "would reclaim" if summary.get("dry_run") else "space reclaimed"
        line += f"; {verb}: {human_bytes(reclaimed)}"
    if summary.get("stopped"):
        line += f"; stopped early ({summary['stopped']}): the next run continues"
    console.print(line, highlight=False)


def status(
    conn: psycopg.Connection, settings: settings_mod.Settings, *, limit: int
) -> dict[str, Any]:
    runs = ledger.recent(conn, limit)
    data: dict[str, Any] = {
        "running": [r for r in runs if r["status"] == "running"],
        "runs": [
            {**r, "deleted": deleted_counts(r["summary"]), "bytes": reclaimed_bytes(r["summary"])}
            for r in runs
        ],
    }
    data["outbox"] = outbox.backlog(conn)
    data["backlog"] = backlog.collect(conn, settings)
    return data


def print_status(console: Console, data: dict[str, Any]) -> None:
    for run in data["running"]:
        console.print(
            f"in progress: run #{run['id']} ({run['kind']}, {run['trigger']}), stage "
            f"{run['stage']}, {run['progress'] or 0:.0f}%",
            highlight=False,
        )
    table = Table(title="recent runs")
    for column in (
        "id",
        "kind",
        "trigger",
        "started",
        "seconds",
        "status",
        "deleted",
        "bytes",
        "error",
    ):
        table.add_column(column)
    for run in data["runs"]:
        deleted = ", ".join(f"{k}: {v}" for k, v in run["deleted"].items())
        kind = run["kind"] + (" (dry run)" if run["dry_run"] else "")
        table.add_row(
            str(run["id"]),
            kind,
            run["trigger"],
            f"{run['started_at']:%Y-%m-%d %H:%M:%S}",
            f"{float(run['seconds'] or 0):.1f}",
            run["status"],
            deleted,
            human_bytes(run["bytes"]),
            (run["error"] or "")[:80],
        )
    console.print(table)
    _print_outbox(console, data.get("outbox"))
    _print_backlog(console, data.get("backlog"))


def human_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _print_outbox(console: Console, entries: dict[str, Any] | None) -> None:
    if not entries:
        return
    line = (
        f"file outbox: {entries['pending']} pending ({entries['failed']} failed at least once), "
        f"{entries['refused']} refused"
    )
    if entries.get("oldest"):
        line += f"; oldest queued {entries['oldest']}"
    console.print(line, highlight=False)
    for problem in entries.get("problems", []):
        console.print(
            f"  {problem['root']}/{problem['path']} ({problem['source']}): {problem['error']}",
            highlight=False,
            markup=False,
        )


def _print_backlog(console: Console, backlog: dict[str, Any] | None) -> None:
    if not backlog:
        return
    table = Table(title="backlog: eligible for deletion now")
    for column in ("policy", "eligible", "oldest", "its age"):
        table.add_column(column)
    rows = [(f"jobs {status}", entry) for status, entry in backlog.get("jobs", {}).items()]
    rows += [(f"table {name}", entry) for name, entry in backlog.get("tables", {}).items()]
    for name, entry in rows:
        if "error" in entry:
            table.add_row(name, "?", entry["error"][:80], "")
            continue
        behind = entry.get("oldest_age_seconds")
        table.add_row(
            name,
            str(entry["eligible"]),
            entry.get("oldest") or "",
            human_age(behind) if behind is not None else "",
        )
    console.print(table)
