"""What runs show people: Rich tables of a run's summary and of `retention status`."""

from __future__ import annotations

from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table
from rich.text import Text

from retention import holds
from retention.config import settings as settings_mod
from retention.engine import ledger, results
from retention.files import outbox
from retention.interfaces import stalled, tasks
from retention.jobs import paths
from retention.run import backlog


def human_bytes(count: int | float | None) -> str:
    value = float(count or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _jobs_detail(jobs: results.JobsSection, dry_run: bool) -> str:
    walk = jobs.walk
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(walk.by.get("status", {}).items()))
    if jobs.events:
        detail += f"; {jobs.events} events"
    if walk.oldest is not None:
        detail += f"; oldest finished {results.jsonable(walk.oldest)}"
    for group in ("queue", "task"):
        counts = walk.by.get(group, {})
        top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        if top:
            more = f" and {len(top) - 3} more" if len(top) > 3 else ""
            detail += f"; by {group}: " + ", ".join(f"{k}: {v}" for k, v in top[:3]) + more
    if dry_run and walk.samples:
        detail += "; e.g. " + ", ".join(f"#{job_id}" for job_id in walk.samples)
    if jobs.held:
        detail += f"; {jobs.held} held (legal hold)"
        for entry in jobs.held_by:
            detail += f"; hold {entry['hold']} ({entry['reason']}): {entry['jobs']}"
    if jobs.path is not None:
        detail += f"; {jobs.path} path ({jobs.path_reason})"
    return detail


def print_summary(console: Console, summary: results.RunSummary) -> None:
    """The run as a table: what went (or would go) per target. Every cell is plain text: queue,
    task, table and file names come from data and are never read as markup."""
    verb = "would delete" if summary.dry_run else "deleted"
    title = f"run #{summary.run_id} ({summary.kind})"
    if summary.dry_run:
        title += ": dry run, nothing deleted"
    table = Table(title=Text(title))
    table.add_column("target")
    table.add_column(verb, justify="right")
    table.add_column("details")

    def row(target: str, deleted: int, detail: str) -> None:
        table.add_row(Text(target), Text(str(deleted)), Text(detail))

    for stage, section in summary.sections.items():
        if isinstance(section, results.JobsSection):
            row("jobs", section.deleted, _jobs_detail(section, summary.dry_run))
        elif isinstance(section, results.TablesStage):
            for name, part in section.tables.items():
                detail = ", ".join(
                    f"{key}: {value}"
                    for key, value in (
                        ("child_rows", part.child_rows),
                        ("partitions_dropped", len(part.partitions)),
                        ("files_queued", part.files_queued),
                        ("held", part.held),
                    )
                    if value
                )
                row(f"table {name}", part.deleted, detail)
        elif isinstance(section, results.OutboxSection | results.SweepStage):
            detail = human_bytes(section.bytes)
            if section.failed:
                detail += f", {section.failed} failed"
            if isinstance(section, results.OutboxSection) and section.pending:
                detail += f", {section.pending} pending"
            row(stage, section.deleted, detail)
    console.print(table)
    line = f"status: {summary.status} in {summary.seconds or 0} s"
    reclaimed = summary.totals().bytes
    if reclaimed:
        verb = "would reclaim" if summary.dry_run else "space reclaimed"
        line += f"; {verb}: {human_bytes(reclaimed)}"
    if summary.stopped:
        line += f"; stopped early ({summary.stopped.value}): the next run continues"
    console.print(line, highlight=False, markup=False)


def status(
    conn: psycopg.Connection, settings: settings_mod.Settings, *, limit: int
) -> dict[str, Any]:
    runs = ledger.recent(conn, limit)
    shown = []
    for run in runs:
        totals = results.RunTotals.from_json(run["summary"])
        shown.append({**run, "deleted": totals.deleted, "bytes": totals.bytes})
    data: dict[str, Any] = {
        "running": [r for r in shown if r["status"] == "running"],
        "runs": shown,
    }
    data["jobs"] = [
        {
            key: row[key]
            for key in ("id", "task_name", "status", "queue_name", "attempts", "worker_id", "why")
        }
        for row in stalled.unfinished(conn, tasks.LOCKED_TASKS)
    ]
    data["outbox"] = outbox.backlog(conn)
    data["backlog"] = backlog.collect(conn, settings)
    data["holds"] = holds.counts(conn).to_json()
    data["jobs_path"] = paths.choose(conn, settings.jobs_path).to_json()
    return data


def print_status(console: Console, data: dict[str, Any]) -> None:
    for job in data.get("jobs", []):
        console.print(
            f"job #{job['id']} ({job['task_name']}, {job['status']}): {job['why']}",
            highlight=False,
            markup=False,
        )
    for run in data["running"]:
        console.print(
            f"in progress: run #{run['id']} ({run['kind']}, {run['trigger']}), stage "
            f"{run['stage']}, {run['progress'] or 0:.0f}%",
            highlight=False,
            markup=False,
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
        cells = (
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
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)
    _print_outbox(console, data.get("outbox"))
    _print_backlog(console, data.get("backlog"))
    _print_holds(console, data.get("holds"))
    chosen = data.get("jobs_path")
    if chosen:
        console.print(
            f"jobs path: {chosen['path']} ({chosen['path_reason']})", highlight=False, markup=False
        )


def _print_holds(console: Console, counts: dict[str, Any] | None) -> None:
    if not counts or not counts["active"]:
        return
    line = (
        f"legal holds: {counts['active']} active ({counts['jobs']} on jobs, {counts['rows']} on "
        "table rows; `retention hold list`)"
    )
    if counts["next_expiry"]:
        line += f"; next expiry {counts['next_expiry']}"
    console.print(line, highlight=False, markup=False)


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
    console.print(line, highlight=False, markup=False)
    for problem in entries.get("problems", []):
        console.print(
            f"  {problem['root']}/{problem['path']} ({problem['source']}): {problem['error']}",
            highlight=False,
            markup=False,
        )


def _print_backlog(console: Console, entries: dict[str, Any] | None) -> None:
    if not entries:
        return
    table = Table(title="backlog: eligible for deletion now")
    for column in ("policy", "eligible", "oldest", "its age"):
        table.add_column(column)
    rows = [(f"jobs {status}", entry) for status, entry in entries.get("jobs", {}).items()]
    rows += [(f"table {name}", entry) for name, entry in entries.get("tables", {}).items()]
    for name, entry in rows:
        if "error" in entry:
            table.add_row(Text(name), Text("?"), Text(entry["error"][:80]), Text(""))
            continue
        behind = entry.get("oldest_age_seconds")
        cells = (
            name,
            str(entry["eligible"]),
            entry.get("oldest") or "",
            human_age(behind) if behind is not None else "",
        )
        table.add_row(*(Text(cell) for cell in cells))
    console.print(table)
