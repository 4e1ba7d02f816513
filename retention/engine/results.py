"""What runs report, as typed values: why a walk stopped, each kind of section, the run summary.

Every summary a person or a program sees (`run --json`, the ledger's `summary` column, `status`,
the metrics) is built from these types and turned into JSON by their `to_json()`. The JSON is an
API: its shape is versioned by `SUMMARY_VERSION` and documented in the README ("The run
summary"). Reading a stored summary back goes through `RunTotals.from_json`, the one place that
knows older shapes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

SUMMARY_VERSION = 1

JSON = dict[str, Any]


class StopReason(enum.StrEnum):
    """Why a walk, a stage or a run stopped before the end of what was eligible."""

    ABORTED = "aborted"
    TIME_BUDGET = "time budget spent"
    LOCK_CONTENTION = "lock contention"
    DRAIN_BUSY = "another drain is in progress"
    REPLICA_LAG = "replica lag"

    @property
    def ends_run(self) -> bool:
        """Whether the run stops here (the next stages would meet the same limit)."""
        return self in (StopReason.ABORTED, StopReason.TIME_BUDGET, StopReason.REPLICA_LAG)


# What a walk is waiting for, between two batches (the ledger's stage says so meanwhile).
WAITING_FOR_REPLICA_LAG = "replica lag"


def jsonable(value: Any) -> Any:
    """A value of a row as JSON: dates as ISO 8601 text, anything unusual as text."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return str(value)


def _stopped(reason: StopReason | None) -> str | None:
    return None if reason is None else reason.value


@dataclasses.dataclass(frozen=True, kw_only=True)
class Resume:
    """Where a stopped walk was: the segment and the last key it had passed."""

    segment: str
    after: tuple[Any, ...]

    def to_json(self) -> JSON:
        return {"segment": self.segment, "after": [jsonable(k) for k in self.after]}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Pacing:
    """How a walk was paced (`pause_between_batches`, `max_replication_lag`). In a dry run,
    nothing sleeps or waits: `pauses` and `lag_waits` count what a real run would have done."""

    pauses: int = 0
    paused_seconds: float = 0.0
    lag_waits: int = 0
    lag_wait_seconds: float = 0.0
    max_lag_seconds: float | None = None

    def to_json(self) -> JSON:
        return {
            "pauses": self.pauses,
            "paused_seconds": round(self.paused_seconds, 3),
            "lag_waits": self.lag_waits,
            "lag_wait_seconds": round(self.lag_wait_seconds, 3),
            "max_lag_seconds": (
                None if self.max_lag_seconds is None else round(self.max_lag_seconds, 3)
            ),
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Walk:
    """What the engine did for one target: its figures, frozen. `pacing` is None when no pacing
    is configured; `waiting` names what the walk is waiting for (in a partial summary)."""

    deleted: int = 0
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    by: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)
    oldest: Any = None
    samples: tuple[Any, ...] = ()
    scanned: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0
    lock_backoffs: int = 0
    stopped: StopReason | None = None
    resume: Resume | None = None
    fraction: float = 0.0
    pacing: Pacing | None = None
    waiting: str | None = None

    def paced(self) -> JSON:
        """The pacing figures and the wait in progress, as JSON (empty when not paced)."""
        data: JSON = {}
        if self.pacing is not None:
            data["pacing"] = self.pacing.to_json()
        if self.waiting is not None:
            data["waiting"] = self.waiting
        return data

    def figures(self) -> JSON:
        """The engine's part of a section, as JSON."""
        return {
            "by": {group: dict(sorted(values.items())) for group, values in self.by.items()},
            "oldest": jsonable(self.oldest),
            "samples": [jsonable(s) for s in self.samples],
            "scanned": self.scanned,
            "batches": self.batches,
            "longest_batch_seconds": round(self.longest_batch_seconds, 4),
            "lock_backoffs": self.lock_backoffs,
            "stopped": _stopped(self.stopped),
            "resume": self.resume.to_json() if self.resume else {},
            **self.paced(),
            **self.archived(),
        }

    def archived(self) -> JSON:
        """The archive's figures, as JSON (empty when the target does not archive): files
        written and their rows and bytes; a dry run counts the rows it would archive."""
        if "archive_rows" not in self.counts:
            return {}
        return {
            "archive": {
                "files": self.counts.get("archive_files", 0),
                "rows": self.counts["archive_rows"],
                "bytes": self.counts.get("archive_bytes", 0),
            }
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class JobsSection:
    """The jobs stage (prune or purge): jobs deleted with their events."""

    walk: Walk
    # Jobs the policy or purge would delete but for a legal hold, and by which holds (a
    # purge's: each hold's id, reason and how many jobs it names); None when not counted.
    held: int | None = None
    held_by: tuple[Mapping[str, Any], ...] = ()
    # Which way the batches deleted ("normal" or "set-based", retention.jobs.paths) and why;
    # None for a section that did not choose.
    path: str | None = None
    path_reason: str | None = None

    @property
    def deleted(self) -> int:
        return self.walk.deleted

    @property
    def events(self) -> int | None:
        """Events deleted with the jobs; None when PostgreSQL does not count them."""
        return self.walk.counts.get("events")

    @property
    def stopped(self) -> StopReason | None:
        return self.walk.stopped

    def to_json(self) -> JSON:
        data: JSON = {"deleted": self.deleted}
        if self.events is not None:
            data["events"] = self.events
        if self.held is not None:
            data["held"] = self.held
        if self.held_by:
            data["held_by"] = [dict(entry) for entry in self.held_by]
        if self.path is not None:
            data["path"] = self.path
            data["path_reason"] = self.path_reason
        return {**data, **self.walk.figures()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PartitionDrop:
    """One partition dropped whole (or, in a dry run, that would be)."""

    name: str
    rows: int
    rows_exact: bool
    child_rows: int
    files_queued: int

    def to_json(self) -> JSON:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TableSection:
    """One table policy: rows deleted row by row and by partition, child rows, files queued."""

    walk: Walk
    cutoff: dt.datetime
    partitions: tuple[PartitionDrop, ...] = ()
    partition_errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    stopped_in_partitions: StopReason | None = None
    # Rows the policy would delete but for a legal hold (their children and files stay too).
    held: int = 0
    # How the partition drops were paced (the row-by-row walk's pacing is the walk's).
    partition_pacing: Pacing | None = None

    @property
    def deleted(self) -> int:
        return self.walk.deleted

    @property
    def child_rows(self) -> int:
        return self.walk.counts.get("child_rows", 0) + sum(p.child_rows for p in self.partitions)

    @property
    def files_queued(self) -> int:
        return self.walk.counts.get("files_queued", 0) + sum(
            p.files_queued for p in self.partitions
        )

    @property
    def stopped(self) -> StopReason | None:
        return self.stopped_in_partitions or self.walk.stopped

    def to_json(self) -> JSON:
        data: JSON = {
            "deleted": self.deleted,
            "child_rows": self.child_rows,
            "files_queued": self.files_queued,
            "held": self.held,
            **self.walk.figures(),
            "stopped": _stopped(self.stopped),
            "cutoff": self.cutoff.isoformat(),
            "partitions_dropped": len(self.partitions),
            "partitions": [p.to_json() for p in self.partitions],
            "partition_rows": sum(p.rows for p in self.partitions),
            "warnings": list(self.warnings),
        }
        if self.partition_errors:
            data["partition_errors"] = list(self.partition_errors)
        if self.partition_pacing is not None:
            data["partition_pacing"] = self.partition_pacing.to_json()
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class TablesStage:
    """Every table policy the stage got to, by policy name, in order."""

    tables: Mapping[str, TableSection] = dataclasses.field(default_factory=dict)
    stopped: StopReason | None = None

    @property
    def deleted(self) -> int:
        return sum(section.deleted for section in self.tables.values())

    def to_json(self) -> JSON:
        return {name: section.to_json() for name, section in self.tables.items()}


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutboxSection:
    """The file outbox's drain: files of deleted rows, unlinked after their rows' commit."""

    deleted: int = 0
    bytes: int = 0
    failed: int = 0
    pending: int = 0
    refused: int = 0
    missing: int = 0
    referenced: int = 0
    # archive_files: files copied into the archive before they were unlinked (a dry run: those
    # it would copy), and their size; None (left out of the JSON) when the drain had no archive
    # root to copy into.
    archived: int | None = None
    archived_bytes: int | None = None
    stopped: StopReason | None = None
    # How the drain was paced (pause_between_batches, max_replication_lag); None when not.
    pacing: Pacing | None = None

    def to_json(self) -> JSON:
        data = dataclasses.asdict(self)
        data["stopped"] = _stopped(self.stopped)
        for name in ("archived", "archived_bytes", "pacing"):
            if data[name] is None:
                del data[name]
        if self.pacing is not None:
            data["pacing"] = self.pacing.to_json()
        return data


# What a sweep counts of the files it looked at again before deleting them.
SWEEP_OUTCOMES = ("missing", "changed", "referenced", "queued", "refused")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepSection:
    """One root of a `[[directories]]` sweep or of the orphan sweep."""

    walk: Walk
    oldest_mtime: str | None = None
    sample: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def deleted(self) -> int:
        return self.walk.deleted

    @property
    def bytes(self) -> int:
        return int(self.walk.counts.get("bytes", 0))

    @property
    def failed(self) -> int:
        return int(self.walk.counts.get("failed", 0))

    @property
    def stopped(self) -> StopReason | None:
        return self.walk.stopped

    def to_json(self) -> JSON:
        counts = self.walk.counts
        data: JSON = {
            "deleted": self.deleted,
            "bytes": self.bytes,
            "failed": self.failed,
            **{key: int(counts[key]) for key in SWEEP_OUTCOMES if counts.get(key)},
            "oldest_mtime": self.oldest_mtime,
            "sample": list(self.sample),
            "batches": self.walk.batches,
            "stopped": _stopped(self.stopped),
            **self.walk.paced(),
            **self.details,
        }
        if self.errors:
            data["errors"] = list(self.errors)
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class SweepStage:
    """Every root a sweep stage got to, by root, in order."""

    roots: Mapping[str, SweepSection] = dataclasses.field(default_factory=dict)
    stopped: StopReason | None = None

    @property
    def deleted(self) -> int:
        return sum(s.deleted for s in self.roots.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.roots.values())

    @property
    def failed(self) -> int:
        return sum(s.failed for s in self.roots.values())

    def to_json(self) -> JSON:
        return {
            "deleted": self.deleted,
            "bytes": self.bytes,
            "failed": self.failed,
            "roots": {name: section.to_json() for name, section in self.roots.items()},
            "stopped": _stopped(self.stopped),
        }


Section = JobsSection | TablesStage | OutboxSection | SweepStage


def _walks(section: Section) -> list[Walk]:
    if isinstance(section, JobsSection):
        return [section.walk]
    if isinstance(section, TablesStage):
        return [table.walk for table in section.tables.values()]
    if isinstance(section, SweepStage):
        return [root.walk for root in section.roots.values()]
    return []


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSummary:
    """One run: its sections by stage name (jobs, tables, files, directories, orphans)."""

    run_id: int
    kind: str
    dry_run: bool
    status: str = "running"
    sections: Mapping[str, Section] = dataclasses.field(default_factory=dict)
    stopped: StopReason | None = None
    seconds: float | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.status == "succeeded" and self.stopped is None

    @property
    def waiting(self) -> str | None:
        """What the run is waiting for now (a partial summary of a running run), if anything."""
        for section in self.sections.values():
            for walk in _walks(section):
                if walk.waiting is not None:
                    return walk.waiting
        return None

    def section(self, stage: str) -> Section | None:
        return self.sections.get(stage)

    def totals(self) -> RunTotals:
        return RunTotals.from_json(self.to_json())

    def to_json(self) -> JSON:
        data: JSON = {
            "summary_version": SUMMARY_VERSION,
            "run_id": self.run_id,
            "kind": self.kind,
            "dry_run": self.dry_run,
            **{stage: section.to_json() for stage, section in self.sections.items()},
            "status": self.status,
            "complete": self.complete,
        }
        if self.stopped is not None:
            data["stopped"] = self.stopped.value
        if self.seconds is not None:
            data["seconds"] = self.seconds
        if self.error:
            data["error"] = self.error
        if self.warnings:
            data["warnings"] = list(self.warnings)
        if self.waiting is not None:
            data["waiting"] = self.waiting
        return data


ROW_STAGES = ("jobs", "tables")
FILE_STAGES = ("files", "directories", "orphans")


@dataclasses.dataclass(frozen=True, kw_only=True)
class FileTotals:
    deleted: int
    bytes: int
    failed: int


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunTotals:
    """What a stored summary says was deleted, per target: rows of jobs and of each table
    (`table:<name>`), files of each file stage. Read from the ledger's JSON, of any version."""

    rows: Mapping[str, int]
    files: Mapping[str, FileTotals]
    complete: bool

    @property
    def deleted(self) -> dict[str, int]:
        """Per target, in stage order: rows, then files."""
        return {**self.rows, **{stage: f.deleted for stage, f in self.files.items()}}

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files.values())

    @classmethod
    def from_json(cls, summary: Mapping[str, Any] | None) -> RunTotals:
        data = summary if isinstance(summary, Mapping) else {}
        rows: dict[str, int] = {}
        jobs = data.get("jobs")
        if isinstance(jobs, Mapping):
            rows["jobs"] = _int(jobs.get("deleted"))
        tables = data.get("tables")
        if isinstance(tables, Mapping):
            for name, table in tables.items():
                if isinstance(table, Mapping):  # version 0 kept `stopped` among the tables
                    rows[f"table:{name}"] = _int(table.get("deleted"))
        files: dict[str, FileTotals] = {}
        for stage in FILE_STAGES:
            section = data.get(stage)
            if isinstance(section, Mapping):
                files[stage] = FileTotals(
                    deleted=_int(section.get("deleted")),
                    bytes=_int(section.get("bytes")),
                    failed=_int(section.get("failed")),
                )
        return cls(rows=rows, files=files, complete=bool(data.get("complete")))


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
