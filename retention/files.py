"""The file outbox: files of deleted rows are queued in the rows' transaction, unlinked after.

A crash between the commit of the rows and the unlink leaves the entry queued: the next drain
unlinks it (a file already gone counts as done). An entry leaves the outbox only in the same
transaction that finished with its file, so a drain killed at any point loses nothing. A file that
cannot be deleted keeps its entry (attempts, last error) for later runs; a path that escapes its
root is marked refused and never touched.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg

from retention import paths, queries, report
from retention import settings as settings_mod

logger = logging.getLogger(__name__)

BATCH_SIZE = 2000
PROBLEM_SAMPLES = 5
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


def enqueue(
    cur: psycopg.Cursor[Any], items: Iterable[tuple[str, str, str]], run_id: int | None
) -> int:
    """Queue (root, path, source) entries in the caller's transaction; NULL/empty paths are
    skipped. Returns how many were queued."""
    roots: list[str] = []
    found: list[str] = []
    sources: list[str] = []
    for root, path, source in items:
        if not path:
            continue
        roots.append(str(root))
        found.append(path)
        sources.append(source)
    if not found:
        return 0
    cur.execute(
        queries.text("outbox_enqueue"),
        {"roots": roots, "paths": found, "sources": sources, "run_id": run_id},
    )
    return cur.rowcount


class _Directories:
    """Open directories of one batch: each parent is checked against its root once (through
    paths.resolve_inside) and the files in it are removed relative to that open directory, so a
    directory swapped for a symlink after the check cannot redirect an unlink."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], int | BaseException] = {}

    def locate(self, root: str, stored: str) -> tuple[int, str]:
        name = os.path.basename(stored)
        if name in ("", ".", "..") or "\x00" in stored:
            raise paths.UnsafePath(f"{stored!r} is not a file path")
        key = (root, os.path.dirname(stored))
        if key not in self._open:
            self._open[key] = self._open_parent(root, stored)
        handle = self._open[key]
        if isinstance(handle, BaseException):
            raise handle
        return handle, name

    @staticmethod
    def _open_parent(root: str, stored: str) -> int | BaseException:
        try:
            resolved = paths.resolve_inside(Path(root), stored)
            return os.open(resolved.parent, _DIR_FLAGS)
        except (paths.UnsafePath, OSError) as exc:
            return exc

    def close(self) -> None:
        for handle in self._open.values():
            if isinstance(handle, int):
                os.close(handle)
        self._open.clear()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return str(exc)


def _settle(
    rows: list[tuple[int, str, str]], dry_run: bool
) -> tuple[Counter[str], list[int], list[tuple[int, str]], list[tuple[int, str]]]:
    """Unlink (or, in a dry run, look at) the files of one batch."""
    counts: Counter[str] = Counter()
    done: list[int] = []
    failed: list[tuple[int, str]] = []
    refused: list[tuple[int, str]] = []
    directories = _Directories()
    try:
        for entry_id, root, stored in rows:
            try:
                parent, name = directories.locate(root, stored)
            except paths.UnsafePath as exc:
                refused.append((entry_id, str(exc)))
                continue
            except FileNotFoundError:
                counts["missing"] += 1
                done.append(entry_id)
                continue
            except OSError as exc:
                failed.append((entry_id, _describe(exc)))
                continue
            try:
                info = os.lstat(name, dir_fd=parent)
                if stat.S_ISDIR(info.st_mode):
                    raise IsADirectoryError(21, "is a directory, not a file")
                if not dry_run:
                    os.unlink(name, dir_fd=parent)
            except FileNotFoundError:
                counts["missing"] += 1
                done.append(entry_id)
                continue
            except OSError as exc:
                failed.append((entry_id, _describe(exc)))
                continue
            counts["deleted"] += 1
            counts["bytes"] += info.st_size
            done.append(entry_id)
    finally:
        directories.close()
    return counts, done, failed, refused


def drain(
    conn: psycopg.Connection,
    *,
    dry_run: bool,
    deadline: float,
    run_id: int | None = None,
    should_abort: Callable[[], bool] | None = None,
    batch_size: int = BATCH_SIZE,
) -> dict[str, Any]:
    """Unlink the files of pending outbox entries, oldest first, one batch per transaction.
    `conn` must be in autocommit mode. In a dry run nothing is unlinked nor updated: the counts
    say what would happen now. Entries that fail stay for the next run (not retried here)."""
    totals: Counter[str] = Counter()
    stopped: str | None = None
    after = 0
    query = queries.text("outbox_preview" if dry_run else "outbox_batch")
    while True:
        if should_abort is not None and should_abort():
            stopped = "aborted"
            break
        if time.monotonic() >= deadline:
            stopped = "time budget spent"
            break
        with conn.transaction(), conn.cursor() as cur:
            if dry_run:
                cur.execute("SET TRANSACTION READ ONLY")
            rows = cur.execute(query, {"after": after, "limit": batch_size}).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            counts, done, failed, refused = _settle(rows, dry_run)
            if not dry_run:
                _record(cur, done, failed, refused)
        totals.update(counts)
        totals["failed"] += len(failed)
        totals["refused"] += len(refused)
        for entry_id, error in failed:
            logger.warning(
                "could not delete outbox file #%s: %s",
                entry_id,
                error,
                extra={"action": "file_failed", "outbox_id": entry_id, "run_id": run_id},
            )
        for entry_id, error in refused:
            logger.warning(
                "refused outbox file #%s: %s",
                entry_id,
                error,
                extra={"action": "file_refused", "outbox_id": entry_id, "run_id": run_id},
            )
        if len(rows) < batch_size:
            break
    left = backlog(conn)
    result = {
        "deleted": totals["deleted"],
        "bytes": totals["bytes"],
        "failed": totals["failed"],
        "pending": left["pending"],
        "refused": totals["refused"],
        "missing": totals["missing"],
        "stopped": stopped,
    }
    logger.info(
        "file outbox drained: %s",
        result,
        extra={"action": "outbox_drained", "run_id": run_id, "dry_run": dry_run, **result},
    )
    return result


def _record(
    cur: psycopg.Cursor[Any],
    done: list[int],
    failed: list[tuple[int, str]],
    refused: list[tuple[int, str]],
) -> None:
    if done:
        cur.execute(queries.text("outbox_done"), {"ids": done})
    for name, entries in (("outbox_failed", failed), ("outbox_refused", refused)):
        if entries:
            cur.execute(
                queries.text(name),
                {"ids": [e[0] for e in entries], "errors": [e[1] for e in entries]},
            )


def backlog(conn: psycopg.Connection) -> dict[str, Any]:
    """What the outbox holds: pending entries (failed: those already tried), refused entries,
    the oldest pending entry's time, and a few of the latest problems."""
    row = conn.execute(queries.text("outbox_backlog")).fetchone()
    assert row is not None
    problems = [
        {
            "id": r[0],
            "root": r[1],
            "path": r[2],
            "source": r[3],
            "attempts": r[4],
            "error": r[5],
            "at": r[6].isoformat() if r[6] else None,
        }
        for r in conn.execute(queries.text("outbox_failures"), {"limit": PROBLEM_SAMPLES})
    ]
    return {
        "pending": row[0],
        "failed": row[1],
        "refused": row[2],
        "oldest": row[3].isoformat() if row[3] else None,
        "problems": problems,
    }


def status_section(conn: psycopg.Connection, settings: settings_mod.Settings) -> dict[str, Any]:
    return {"outbox": backlog(conn)}


report.STATUS_SECTIONS.append(status_section)
