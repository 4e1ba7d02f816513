"""Copies of the files of deleted rows (`archive_files = true` on a [[tables]] policy), made by
the outbox drain before it unlinks them.

A copy is content-addressed: `<archive root>/files/<sha256[:2]>/<sha256>`. It is written under a
temporary name in `files/`, fsynced, renamed to its name and its directory fsynced; only then is
it recorded (`retention_archived_files`, committed) and only then is the original unlinked. The
same content met again is renamed over the copy already there: the bytes are the same, and a
copy damaged since is mended. The source is an open descriptor: the caller (files/outbox.py)
opens it relative to its directory's descriptor with O_NOFOLLOW, so nothing here takes a path
from the database, and nothing outside the configured roots is ever read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from retention.archive import writer
from retention.pg import queries

FOLDER = "files"
CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class Copied:
    """A file copied into the archive: its path under the archive root, size and sha256."""

    path: str
    bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Archived:
    """One copy to record: the outbox entry, the original's root and stored path, the copy."""

    outbox_id: int
    root: str
    path: str
    copy: Copied


def location(sha256: str) -> str:
    """Where the copy of content with this sha256 lives, relative to the archive root."""
    return f"{FOLDER}/{sha256[:2]}/{sha256}"


def copy(root: Path, source: int) -> Copied:
    """Copy the open regular file `source` (read from offset 0 to its end) into the archive
    `root`, durably (see the module's docstring). OSError when it cannot: nothing is left but,
    after a crash, a temporary `files/.copy-*.tmp`."""
    folder = writer.makedirs(root, Path(FOLDER))
    temporary = folder / f".copy-{uuid.uuid4().hex}.tmp"
    digest = hashlib.sha256()
    size = 0
    try:
        fd = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640
        )
        try:
            while chunk := os.pread(source, CHUNK, size):
                digest.update(chunk)
                size += len(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        sha256 = digest.hexdigest()
        target = writer.makedirs(root, Path(FOLDER, sha256[:2]))
        os.rename(temporary, target / sha256)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    writer.fsync_dir(target)
    writer.fsync_dir(folder)
    return Copied(path=location(sha256), bytes=size, sha256=sha256)


def record(conn: psycopg.Connection[Any], run_id: int | None, done: Sequence[Archived]) -> None:
    """Record copies in the ledger, in one statement (committed when `conn` is in autocommit)."""
    if not done:
        return
    conn.execute(
        queries.text("record_archived_files"),
        {
            "run_id": run_id,
            "outbox_ids": [d.outbox_id for d in done],
            "roots": [d.root for d in done],
            "paths": [d.path for d in done],
            "archive_paths": [d.copy.path for d in done],
            "bytes": [d.copy.bytes for d in done],
            "sha256s": [d.copy.sha256 for d in done],
        },
    )
