"""A legal hold as read back from `retention_holds`: what it names, why, who placed it, until
when, and whether it holds now."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


@dataclasses.dataclass(frozen=True, kw_only=True)
class Hold:
    id: int
    job_ids: tuple[int, ...] = ()
    queue: str | None = None
    task: str | None = None
    table: str | None = None
    keys: tuple[str, ...] = ()
    where: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)
    reason: str
    placed_by: str
    role: str
    placed_at: dt.datetime
    expires_at: dt.datetime | None = None
    released_at: dt.datetime | None = None
    released_by: str | None = None
    active: bool = True

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Hold:
        filter_ = row["filter"] if isinstance(row["filter"], dict) else {}
        return cls(
            id=row["id"],
            job_ids=tuple(row["job_ids"] or ()),
            queue=row["queue_glob"],
            task=row["task_glob"],
            table=row["table_name"],
            keys=tuple(row["keys"] or ()),
            where={
                str(k): [str(v) for v in vs] for k, vs in filter_.items() if isinstance(vs, list)
            },
            reason=row["reason"],
            placed_by=row["placed_by"],
            role=row["role"],
            placed_at=row["placed_at"],
            expires_at=row["expires_at"],
            released_at=row["released_at"],
            released_by=row["released_by"],
            active=bool(row["active"]),
        )

    @property
    def kind(self) -> str:
        """What it holds: jobs (by id, queue or task) or rows of a table."""
        return "rows" if self.table is not None else "jobs"

    @property
    def state(self) -> str:
        if self.released_at is not None:
            return "released"
        return "active" if self.active else "expired"

    def describe(self) -> str:
        """What the hold names, as one line of text."""
        if self.job_ids:
            return "jobs " + ", ".join(f"#{i}" for i in self.job_ids)
        if self.queue is not None:
            return f"jobs of queue {self.queue}"
        if self.task is not None:
            return f"jobs of task {self.task}"
        parts = [f"rows of {self.table}"]
        if self.keys:
            parts.append("key " + ", ".join(self.keys))
        for column, values in self.where.items():
            parts.append(f"{column} in ({', '.join(values)})")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        def when(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "job_ids": list(self.job_ids),
            "queue": self.queue,
            "task": self.task,
            "table": self.table,
            "keys": list(self.keys),
            "where": {k: list(v) for k, v in self.where.items()},
            "reason": self.reason,
            "placed_by": self.placed_by,
            "role": self.role,
            "placed_at": when(self.placed_at),
            "expires_at": when(self.expires_at),
            "released_at": when(self.released_at),
            "released_by": self.released_by,
            "names": self.describe(),
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Counts:
    """Active holds by kind, and the next one to expire."""

    jobs: int = 0
    rows: int = 0
    next_expiry: dt.datetime | None = None

    @property
    def total(self) -> int:
        return self.jobs + self.rows

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.total,
            "jobs": self.jobs,
            "rows": self.rows,
            "next_expiry": self.next_expiry.isoformat() if self.next_expiry else None,
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class InForce:
    """The holds in force when a run started (its summary's `holds`): how many, by kind, and
    their ids (the first IDS_LIMIT of them; `active` counts them all)."""

    IDS_LIMIT: ClassVar[int] = 1000

    active: int = 0
    jobs: int = 0
    rows: int = 0
    ids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"active": self.active, "jobs": self.jobs, "rows": self.rows, "ids": list(self.ids)}
