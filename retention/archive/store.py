"""Reading the archive: the files the ledger records, their check against the disk, and the
rows a file holds; the copies of deleted rows' files (archive_files) and their check."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from retention.archive import files, writer
from retention.pg import queries


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recorded:
    """An archive file as the ledger records it (path relative to the archive root)."""

    id: int
    run_id: int | None
    target: str
    path: str
    rows: int
    bytes: int
    sha256: str
    format: str
    written_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["written_at"] = self.written_at.isoformat()
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class Copy:
    """A file of a deleted row copied into the archive (archive_files), as the ledger records it:
    the original's root and stored path, the copy's path relative to the archive root."""

    id: int
    run_id: int | None
    root: str
    path: str
    archive_path: str
    bytes: int
    sha256: str
    archived_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["archived_at"] = self.archived_at.isoformat()
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class Row:
    """One archived row: its table (name parts) and its values, as PostgreSQL's JSON gave them."""

    table: tuple[str, ...]
    values: dict[str, Any]


def recorded(
    conn: psycopg.Connection, *, run_id: int | None = None, limit: int = 1000
) -> list[Recorded]:
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(
            queries.text("archive_files"), {"run_id": run_id, "limit": limit}
        ).fetchall()
    return [Recorded(**row) for row in found]


def copies(conn: psycopg.Connection, *, run_id: int | None = None, limit: int = 1000) -> list[Copy]:
    """The copied files the ledger records, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute(
            queries.text("archived_files"), {"run_id": run_id, "limit": limit}
        ).fetchall()
    return [Copy(**row) for row in found]


def rows(path: Path) -> Iterator[Row]:
    """The rows of one archive file, in file order (parents before their children)."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                entry = json.loads(line)
                yield Row(table=tuple(entry["table"]), values=entry["row"])


@dataclasses.dataclass(frozen=True, kw_only=True)
class Check:
    """One file's check: `problem` is None when the file matches its ledger row."""

    path: str
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _check_one(root: Path, entry: Recorded) -> str | None:
    path = root / entry.path
    if not path.is_file():
        return "missing from the archive root"
    data = path.read_bytes()
    if len(data) != entry.bytes:
        return f"{len(data)} bytes, the ledger says {entry.bytes}"
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        return "sha256 differs from the ledger's"
    try:
        count = sum(1 for _ in rows(path))
    except (OSError, EOFError, ValueError, KeyError) as exc:
        return f"unreadable: {exc}"
    if count != entry.rows:
        return f"{count} rows, the ledger says {entry.rows}"
    return None


def verify(conn: psycopg.Connection, root: Path) -> tuple[list[Check], list[str]]:
    """Every recorded file checked (size, sha256, row count), and the files under `root` the
    ledger does not record: left by a batch that did not commit (its rows were not deleted)."""
    entries = recorded(conn, limit=2**31 - 1)
    checks = [Check(path=e.path, problem=_check_one(root, e)) for e in reversed(entries)]
    known = {e.path for e in entries}
    unrecorded = sorted(
        str(p.relative_to(root))
        for p in root.rglob(f"*{writer.SUFFIX}")
        if p.is_file() and str(p.relative_to(root)) not in known
    )
    return checks, unrecorded


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as data:
        while chunk := data.read(files.CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def verify_copies(conn: psycopg.Connection, root: Path) -> tuple[list[Check], list[str]]:
    """Every recorded copy checked, one check per ledger row (present, size, sha256 against the
    ledger; a copy that several files share is read once), and the copies under `root` the ledger does not record (a drain
    killed between the copy and its record: the original was not unlinked)."""
    entries = copies(conn, limit=2**31 - 1)
    seen: dict[str, tuple[int, str] | str] = {}
    checks: list[Check] = []
    for entry in reversed(entries):
        found = seen.get(entry.archive_path)
        if found is None:
            path = root / entry.archive_path
            if path.is_symlink() or not path.is_file():
                found = "missing from the archive root"
            else:
                try:
                    found = _digest(path)
                except OSError as exc:
                    found = f"unreadable: {exc}"
            seen[entry.archive_path] = found
        problem: str | None = None
        if isinstance(found, str):
            problem = found
        elif found[0] != entry.bytes:
            problem = f"{found[0]} bytes, the ledger says {entry.bytes}"
        elif found[1] != entry.sha256:
            problem = "sha256 differs from the ledger's"
        if problem is not None:
            problem = f"copy of {entry.path!r} (under {entry.root}): {problem}"
        checks.append(Check(path=entry.archive_path, problem=problem))
    known = {e.archive_path for e in entries}
    folder = root / files.FOLDER
    unrecorded = sorted(
        str(p.relative_to(root))
        for p in (folder.glob("*/*") if folder.is_dir() else ())
        if p.is_file() and not p.name.startswith(".") and str(p.relative_to(root)) not in known
    )
    return checks, unrecorded
