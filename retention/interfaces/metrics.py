"""`retention metrics`: the Prometheus text exposition format (version 0.0.4), for node_exporter's
textfile collector or any scraper: what the last run deleted, how long it took, failures, the
file outbox and, per policy, the backlog a run would delete now."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import tempfile
from pathlib import Path

import psycopg

from retention import errors, holds
from retention.config import settings as settings_mod
from retention.engine import results
from retention.files import outbox
from retention.jobs import paths
from retention.pg import queries
from retention.run import backlog

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclasses.dataclass(kw_only=True)
class Family:
    name: str
    kind: str
    help: str
    samples: list[Sample] = dataclasses.field(default_factory=list)

    def add(self, value: float | None, **labels: str) -> None:
        if value is not None:
            self.samples.append(Sample(labels=labels, value=float(value)))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render(families: list[Family]) -> str:
    lines: list[str] = []
    for family in families:
        if not _NAME.match(family.name):
            raise ValueError(f"invalid metric name {family.name!r}")
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for sample in family.samples:
            labels = ""
            if sample.labels:
                for key in sample.labels:
                    if not _LABEL.match(key) or key.startswith("__"):
                        raise ValueError(f"invalid label name {key!r}")
                labels = (
                    "{"
                    + ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels.items())
                    + "}"
                )
            lines.append(f"{family.name}{labels} {_value(sample.value)}")
    return "\n".join(lines) + "\n"


def _last_run(conn: psycopg.Connection) -> list[Family]:
    info = Family(
        name="retention_last_run_info",
        kind="gauge",
        help="The last finished retention run (not a dry run): 1, with its status and trigger.",
    )
    last_id = Family(
        name="retention_last_run_id",
        kind="gauge",
        help="Id of the last finished retention run in the ledger (`retention status`).",
    )
    finished = Family(
        name="retention_last_run_timestamp_seconds",
        kind="gauge",
        help="When the last retention run finished, in Unix seconds.",
    )
    duration = Family(
        name="retention_last_run_duration_seconds",
        kind="gauge",
        help="How long the last retention run took.",
    )
    success = Family(
        name="retention_last_run_success",
        kind="gauge",
        help="1 when the last retention run succeeded, else 0.",
    )
    complete = Family(
        name="retention_last_run_complete",
        kind="gauge",
        help="1 when the last run got through everything eligible; 0 when a time budget, an "
        "abort or a failure stopped it (retention is falling behind if this stays 0).",
    )
    rows = Family(
        name="retention_last_run_deleted_rows",
        kind="gauge",
        help="Rows the last retention run deleted, per target (jobs, table:<name>).",
    )
    deleted_files = Family(
        name="retention_last_run_deleted_files",
        kind="gauge",
        help="Files the last retention run deleted, per target (files, directories, orphans).",
    )
    deleted_bytes = Family(
        name="retention_last_run_deleted_bytes",
        kind="gauge",
        help="Bytes of the files the last retention run deleted, per target.",
    )
    failed_files = Family(
        name="retention_last_run_failed_files",
        kind="gauge",
        help="Files the last retention run could not delete, per target (queued for retry).",
    )
    families = [
        info,
        last_id,
        finished,
        duration,
        success,
        complete,
        rows,
        deleted_files,
        deleted_bytes,
        failed_files,
    ]
    row = conn.execute(queries.text("metrics_last_run")).fetchone()
    if row is None:
        return families
    run_id, status, trigger, _, finished_at, seconds, summary = row
    info.add(1, status=status, trigger=trigger)
    last_id.add(run_id)
    finished.add(finished_at.timestamp() if finished_at else None)
    duration.add(seconds)
    success.add(1 if status == "succeeded" else 0)
    totals = results.RunTotals.from_json(summary)
    complete.add(1 if totals.complete else 0)
    for target, count in totals.rows.items():
        rows.add(count, target=target)
    for target, files in totals.files.items():
        deleted_files.add(files.deleted, target=target)
        deleted_bytes.add(files.bytes, target=target)
        failed_files.add(files.failed, target=target)
    return families


def _runs(conn: psycopg.Connection) -> list[Family]:
    runs = Family(
        name="retention_runs_total",
        kind="counter",
        help="Retention runs recorded in the ledger (dry runs aside), by kind and final status; "
        "failed and abandoned ones need a look.",
    )
    for kind, status, count in conn.execute(queries.text("metrics_runs_by_status")):
        if status != "running":
            runs.add(count, kind=kind, status=status)
    running = Family(
        name="retention_run_in_progress",
        kind="gauge",
        help="1 while a retention run is in progress.",
    )
    progress = Family(
        name="retention_run_progress_ratio",
        kind="gauge",
        help="How far the current stage of the run in progress is, from 0 to 1.",
    )
    elapsed = Family(
        name="retention_run_elapsed_seconds",
        kind="gauge",
        help="How long the run in progress has been running.",
    )
    row = conn.execute(queries.text("metrics_running")).fetchone()
    running.add(1 if row else 0)
    if row:
        _, kind, stage, fraction, seconds = row
        progress.add((fraction or 0) / 100, kind=kind, stage=stage or "")
        elapsed.add(seconds, kind=kind)
    return [runs, running, progress, elapsed]


def _outbox(conn: psycopg.Connection) -> list[Family]:
    entries = Family(
        name="retention_outbox_files",
        kind="gauge",
        help="Files in the file outbox: pending (waiting for deletion), failed (pending, "
        "deletion failed at least once), refused (path outside its root, never deleted).",
    )
    oldest = Family(
        name="retention_outbox_oldest_age_seconds",
        kind="gauge",
        help="Age of the oldest pending file in the outbox.",
    )
    data = outbox.backlog(conn)
    for state in ("pending", "failed", "refused"):
        entries.add(data[state], state=state)
    if data["oldest"]:
        row = conn.execute(
            "SELECT EXTRACT(EPOCH FROM now() - %s::timestamptz)::double precision",
            (data["oldest"],),
        ).fetchone()
        assert row is not None
        oldest.add(row[0])
    return [entries, oldest]


def _backlog(conn: psycopg.Connection, settings: settings_mod.Settings) -> list[Family]:
    eligible = Family(
        name="retention_backlog_rows",
        kind="gauge",
        help="Rows a retention run would delete now, per policy (jobs by final status, "
        "table:<name>).",
    )
    oldest = Family(
        name="retention_backlog_oldest_age_seconds",
        kind="gauge",
        help="Age of the oldest row eligible now, per policy (0 rows: no sample).",
    )
    invalid = Family(
        name="retention_policy_invalid",
        kind="gauge",
        help="1 when the table policies do not match the database (`retention status` says why).",
    )
    data = backlog.collect(conn, settings)
    for status, entry in data["jobs"].items():
        eligible.add(entry["eligible"], policy="jobs", status=status)
        oldest.add(entry["oldest_age_seconds"], policy="jobs", status=status)
    problem = 0
    for name, entry in data["tables"].items():
        if "error" in entry:
            problem = 1
            continue
        eligible.add(entry["eligible"], policy=f"table:{name}")
        oldest.add(entry["oldest_age_seconds"], policy=f"table:{name}")
    invalid.add(problem)
    return [eligible, oldest, invalid]


def _holds(conn: psycopg.Connection) -> list[Family]:
    active = Family(
        name="retention_holds_active",
        kind="gauge",
        help="Legal holds in force (not released, not expired), by what they hold: jobs or "
        "table rows.",
    )
    counts = holds.counts(conn)
    active.add(counts.jobs, kind="jobs")
    active.add(counts.rows, kind="rows")
    return [active]


def _jobs_path(conn: psycopg.Connection, settings: settings_mod.Settings) -> list[Family]:
    chosen = paths.choose(conn, settings.jobs_path)
    path = Family(
        name="retention_jobs_set_based",
        kind="gauge",
        help="1: a run now would delete jobs on the set-based path; 0: on the normal path (the "
        "reason is in retention status).",
    )
    path.add(1 if chosen.set_based else 0)
    return [path]


def collect(conn: psycopg.Connection, settings: settings_mod.Settings) -> list[Family]:
    up = Family(
        name="retention_metrics_up",
        kind="gauge",
        help="1: the metrics were read from the retention database.",
    )
    up.add(1)
    return [
        up,
        *_last_run(conn),
        *_runs(conn),
        *_outbox(conn),
        *_backlog(conn, settings),
        *_holds(conn),
        *_jobs_path(conn, settings),
    ]


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename, so a
    reader (node_exporter) never sees half a file."""
    folder = path.parent
    if not folder.is_dir():
        raise errors.ConfigError(
            f"--output {str(path)!r}: directory {str(folder)!r} does not exist; create it or "
            "choose another path (node_exporter: its --collector.textfile.directory)"
        )
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def exposition(conn: psycopg.Connection, settings: settings_mod.Settings) -> str:
    return render(collect(conn, settings))
