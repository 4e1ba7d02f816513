"""Writing one archive file per deleted batch, inside the batch's transaction.

A file is JSON Lines, gzip-compressed (level 1: JSON compresses several times over even at the
fastest level, and the write sits inside a delete transaction, so speed matters more than the
last few percent). Each line is one deleted row, `{"table": [schema, name], "row": {...}}`, the
row as PostgreSQL's JSON gives it (row_to_json for jobs and events, to_jsonb for table rows:
the same values), parents before their children (a job before its events).
The file is written under a temporary name, fsynced, renamed to its final name and its
directory fsynced; then the file is recorded in `retention_archive_files` in the batch's
transaction, and only then does the batch commit. A crash between the fsync and the commit leaves
a file that no ledger row names, whose rows were not deleted: archiving is at-least-once, and a
row may appear in two files; readers and `retention archive restore` dedupe by primary key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import itertools
import os
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg

from retention.config import policies
from retention.config import settings as settings_mod
from retention.pg import queries

FORMAT = "jsonl.gz"
SUFFIX = ".jsonl.gz"
COMPRESS_LEVEL = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclasses.dataclass(frozen=True, kw_only=True)
class File:
    """One archive file written: its path relative to the archive root, and its figures."""

    path: str
    rows: int
    bytes: int
    sha256: str


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (a file created, renamed or a directory made in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs(root: Path, relative: Path) -> Path:
    """`root / relative`, creating (and fsyncing the parents of) the directories missing."""
    if not root.is_dir():
        root.mkdir(mode=0o750, parents=True, exist_ok=True)
        fsync_dir(root.parent)
    current = root
    for part in relative.parts:
        parent, current = current, current / part
        if not current.is_dir():
            current.mkdir(mode=0o750, exist_ok=True)
            fsync_dir(parent)
    return current


@dataclasses.dataclass(kw_only=True)
class Writer:
    """Writes a target's batches under `root/<date>/<target>/`, recording each file with the run's
    id. `written` lists the files of this writer's batches (committed or not)."""

    root: Path
    target: str
    run_id: int | None
    # archive_files: the files of the deleted rows are queued to be copied into the archive by
    # the outbox drain before it unlinks them (archive/files.py).
    files: bool = False
    written: list[File] = dataclasses.field(default_factory=list)
    _sequence: itertools.count[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def write(self, conn: psycopg.Connection[Any], lines: str, rows: int) -> File:
        """Write `lines` (newline-separated JSON, `rows` of them) as one durable file and record
        it in the ledger through `conn`, inside the caller's transaction."""
        data = gzip.compress(lines.encode("utf-8") + b"\n", compresslevel=COMPRESS_LEVEL, mtime=0)
        today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        folder = makedirs(self.root, Path(today, _UNSAFE.sub("_", self.target)))
        name = (
            f"run-{self.run_id if self.run_id is not None else 'none'}-"
            f"{next(self._sequence):06d}-{uuid.uuid4().hex[:12]}{SUFFIX}"
        )
        temporary = folder / f".{name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, folder / name)
        fsync_dir(folder)
        written = File(
            path=str((folder / name).relative_to(self.root)),
            rows=rows,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        conn.execute(
            queries.text("record_archive_file"),
            {
                "run_id": self.run_id,
                "target": self.target,
                "path": written.path,
                "rows": written.rows,
                "bytes": written.bytes,
                "sha256": written.sha256,
                "format": FORMAT,
            },
        )
        self.written.append(written)
        return written


def counts(file: File) -> dict[str, int]:
    """A file's figures as the engine's counts (summed into the walk's result)."""
    return {"archive_files": 1, "archive_rows": file.rows, "archive_bytes": file.bytes}


def for_policy(
    settings: settings_mod.Settings,
    target: str,
    archived: bool,
    run_id: int | None,
    *,
    files: bool = False,
) -> Writer | None:
    """The writer of a policy that archives (`archived`), under the settings' [archive] root;
    None otherwise. A dry run gets one too: it writes nothing, its preview only counts. `files`:
    the policy also archives the files of its rows (archive_files)."""
    root = settings.archive.root
    if not archived or root is None:
        return None
    return Writer(root=Path(root), target=target, run_id=run_id, files=files)


def _table_policy(settings: settings_mod.Settings, plan_name: str) -> policies.TablePolicy | None:
    """The enabled table policy that planning names `plan_name` (its table, `#2`, `#3`... after
    the first policy of the same table)."""
    seen: dict[str, int] = {}
    for policy in settings.tables:
        if not policy.enabled:
            continue
        name = policy.table
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        if name == plan_name:
            return policy
    return None


def table_archived(settings: settings_mod.Settings, plan_name: str) -> bool:
    """Whether the enabled table policy that planning names `plan_name` says archive = true."""
    policy = _table_policy(settings, plan_name)
    return policy is not None and policy.archive


def table_archives_files(settings: settings_mod.Settings, plan_name: str) -> bool:
    """Whether that policy says archive_files = true (which needs archive = true)."""
    policy = _table_policy(settings, plan_name)
    return policy is not None and policy.archive and policy.archive_files
