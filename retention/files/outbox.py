"""The file outbox: files of deleted rows are queued in the rows' transaction, unlinked after.

A crash between the commit of the rows and the unlink leaves the entry queued: the next drain
unlinks it. An entry is removed only after its file is gone (a file already gone counts as
missing, which is done too), so a drain killed at any point loses nothing. A file that cannot be
deleted keeps its entry (attempts, last error) for later runs; a path that escapes its root is
marked refused and never touched.

Nothing in the outbox is trusted: an entry's root must be a root of the settings, and a file is
unlinked only when no configured file column references it any more (files/references.py: the
values that end in an entry's name are read once per drain, then each batch asks the columns that
have an index again). A file still referenced stays, and its entry goes: the row that references
it queues it again when it is deleted.

An entry queued with archive = true (a policy with archive_files) is copied into the archive
first (archive/files.py), after the same checks (its root, its references, the walk down from
the root) and opened relative to its directory's descriptor without following a symlink: the
copy is made durable, recorded (committed), and only then is the file unlinked and its entry
removed. A file that cannot be copied is neither unlinked nor forgotten: its entry stays, failed,
for the next drain. A crash at any point leaves the file in place with its entry, or a durable
recorded copy (or an unrecorded one, when the crash came before the record: at-least-once).
These entries are handled in the drain's own thread, while the pool unlinks the batch's others.
"""

from __future__ import annotations

import concurrent.futures
import errno
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from retention.archive import files as archive_files
from retention.config import policies, roots
from retention.config import settings as settings_mod
from retention.engine import batches, results
from retention.files import references, safefs, storages
from retention.pg import queries

logger = logging.getLogger(__name__)

BATCH_SIZE = 5000
PROBLEM_SAMPLES = 5
OPEN_DIRECTORIES = safefs.OPEN_DIRECTORIES


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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return str(exc)


Settled = tuple[Counter[str], list[int], list[tuple[int, str]], list[tuple[int, str]]]

Entry = tuple[int, str, str]

# An entry as the batch reads it: id, root, path, and whether its file is archived first.
Queued = tuple[int, str, str, bool]


Unlinked = tuple[Counter[str], list[int], list[tuple[int, str]]]

Members = list[tuple[int, bytes]]

Located = list[tuple[safefs.Directory, Members]]

# Rows written since the drain read the file columns are looked for among those whose timestamp
# is at most this old (when a policy's timestamp has an index and the file column has none).
RECENT = "1 hour"


def configured_roots(settings: settings_mod.Settings) -> frozenset[str]:
    """The roots an outbox entry may name: those of the file columns that delete their files, as
    the settings give them. An entry's root is data a database writer could forge: the drain
    refuses any other. (The sweeps queue nothing: a file they could not delete is found again,
    and checked again, by the next sweep.)"""
    found = {
        column.location
        for policy in settings.tables
        for columns in (policy.files, *(child.files for child in policy.children))
        for column in columns
        if column.delete
    }
    return frozenset(found)


def _settle(
    rows: list[Entry],
    dry_run: bool,
    directories: safefs.Roots,
    allowed: frozenset[str],
    helper: concurrent.futures.Executor | None = None,
    named: references.Named | None = None,
    keep: frozenset[int] = frozenset(),
    finish: Callable[[Located], list[Unlinked]] | None = None,
) -> Settled:
    """Unlink (or, in a dry run, look at) the files of one batch, directory by directory. With a
    `helper`, the directories are shared between this thread and the helper's (unlink and lstat
    release the GIL, so the two run in parallel). Directories are walked to (safefs) here only,
    in chunks, each held open until its files are done. An entry whose file a row references
    (`named`: by its path or, once its directory is open, by the directory's identity; `keep`:
    found by the batch's recheck) is done without unlinking. `finish` does what is done to the
    files left in each chunk of located directories (default: unlink them); an entry of a
    storage root cannot be copied by it: it fails."""
    counts: Counter[str] = Counter()
    done: list[int] = []
    failed: list[tuple[int, str]] = []
    refused: list[tuple[int, str]] = []
    groups: dict[tuple[str, str], Members] = {}
    paths: dict[int, str] = {}
    trusted: dict[str, bool] = {}
    for entry_id, root, stored in rows:
        known = trusted.get(root)
        if known is None:
            known = trusted[root] = str(roots.normalise(Path(root))) in allowed
        if not known:
            refused.append(
                (
                    entry_id,
                    f"root {root!r} is not a root of the settings (a file column's or a "
                    "[[directories]] root): never deleted",
                )
            )
            continue
        if root.startswith(policies.STORAGE_PREFIX):
            if entry_id in keep or (
                named is not None
                and named.could_name(stored.rpartition("/")[2])
                and named.names(references.normalise(root, stored), None)
            ):
                counts["referenced"] += 1
                done.append(entry_id)
                continue
            if finish is not None:
                failed.append(
                    (entry_id, "archive_files copies local files only: not deleted, not copied")
                )
                continue
            _through_storage(entry_id, root, stored, dry_run, counts, done, failed, refused)
            continue
        directory, slash, name = stored.rpartition("/")
        if name in ("", ".", "..") or "\x00" in stored:
            refused.append((entry_id, f"{stored!r} is not a file path"))
            continue
        if slash and not directory:
            directory = "/"
        if entry_id in keep:
            counts["referenced"] += 1
            done.append(entry_id)
            continue
        if named is not None and named.could_name(name):
            path = paths[entry_id] = references.normalise(root, stored)
            if named.names(path, None):
                counts["referenced"] += 1
                done.append(entry_id)
                continue
        groups.setdefault((root, directory), []).append((entry_id, os.fsencode(name)))
    chunk = max(1, OPEN_DIRECTORIES // 2)
    items = list(groups.items())
    for start in range(0, len(items), chunk):
        with directories.descriptors.hold():
            located: list[tuple[safefs.Directory, Members]] = []
            for (root, directory), members in items[start : start + chunk]:
                try:
                    parent = directories.walker(root).directory(directory)
                    if paths:
                        members = _unreferenced(parent, members, paths, named, counts, done)
                    located.append((parent, members))
                except safefs.UnsafePath as exc:
                    refused.extend((entry_id, str(exc)) for entry_id, _ in members)
                except FileNotFoundError:
                    counts["missing"] += len(members)
                    done.extend(entry_id for entry_id, _ in members)
                except OSError as exc:
                    failed.extend((entry_id, _describe(exc)) for entry_id, _ in members)
            finished = _unlink_all(located, dry_run, helper) if finish is None else finish(located)
            for unlinked, gone, stuck in finished:
                counts.update(unlinked)
                done.extend(gone)
                failed.extend(stuck)
    return counts, done, failed, refused


def _through_storage(
    entry_id: int,
    root: str,
    name: str,
    dry_run: bool,
    counts: Counter[str],
    done: list[int],
    failed: list[tuple[int, str]],
    refused: list[tuple[int, str]],
) -> None:
    """Delete (or, in a dry run, look at) one file of a registered storage, through its API."""
    key = root[len(policies.STORAGE_PREFIX) :]
    problem = storages.unsafe_name(name)
    if problem is not None:
        refused.append((entry_id, problem))
        return
    storage = storages.get(key)
    if storage is None:
        failed.append(
            (
                entry_id,
                f"the storage {key!r} is not registered in this process: run retention where "
                "the application's storages are configured (for Django: ./manage.py retention "
                "run, or ./manage.py procrastinate worker)",
            )
        )
        return
    try:
        if not storage.exists(name):
            counts["missing"] += 1
            done.append(entry_id)
            return
        try:
            size = int(storage.size(name))
        except (OSError, NotImplementedError, ValueError):
            size = 0
        if not dry_run:
            storage.delete(name)
    except Exception as exc:  # a storage's own errors (network, permissions): retried later
        failed.append((entry_id, f"{type(exc).__name__}: {exc}"))
        return
    counts["deleted"] += 1
    counts["bytes"] += size
    done.append(entry_id)


def _unreferenced(
    parent: safefs.Directory,
    members: Members,
    paths: dict[int, str],
    named: references.Named | None,
    counts: Counter[str],
    done: list[int],
) -> Members:
    """The members no row references through another spelling of their directory (`paths`:
    those whose name some value ends in)."""
    identity = (parent.device, parent.inode)
    left: Members = []
    for entry_id, name in members:
        path = paths.get(entry_id)
        if named is not None and path is not None and named.names(path, identity):
            counts["referenced"] += 1
            done.append(entry_id)
        else:
            left.append((entry_id, name))
    return left


def _unlink_all(
    located: list[tuple[safefs.Directory, Members]],
    dry_run: bool,
    helper: concurrent.futures.Executor | None,
) -> list[Unlinked]:
    """_unlink over located directories; with a helper, the second half of the files (in order,
    a directory split in two if need be) goes to its thread."""
    total = sum(len(members) for _, members in located)
    if helper is None or total < 2:
        return [_unlink(parent, members, dry_run) for parent, members in located]
    mine: list[tuple[safefs.Directory, Members]] = []
    theirs: list[tuple[safefs.Directory, Members]] = []
    room = total // 2
    for parent, members in located:
        if room >= len(members):
            mine.append((parent, members))
        elif room > 0:
            mine.append((parent, members[:room]))
            theirs.append((parent, members[room:]))
        else:
            theirs.append((parent, members))
        room = max(0, room - len(members))
    other = helper.submit(lambda: [_unlink(parent, members, dry_run) for parent, members in theirs])
    here = [_unlink(parent, members, dry_run) for parent, members in mine]
    return here + other.result()


def _unlink(parent: safefs.Directory, members: Members, dry_run: bool) -> Unlinked:
    """Whatever is at each name goes (a symlink itself, never its target), unless it is a
    directory: that entry fails."""
    deleted = missing = size = 0
    done: list[int] = []
    failed: list[tuple[int, str]] = []
    unlink = parent.unlink
    for entry_id, name in members:
        try:
            info = unlink(name, dry_run=dry_run)
        except FileNotFoundError:
            missing += 1
            done.append(entry_id)
            continue
        except OSError as exc:
            failed.append((entry_id, _describe(exc)))
            continue
        deleted += 1
        size += info.st_size
        done.append(entry_id)
    return Counter(deleted=deleted, bytes=size, missing=missing), done, failed


class _Copier:
    """What `_settle` does to the files of entries queued with archive = true, in the drain's
    own thread (it records through the drain's connection): each file opened relative to its
    directory without following a symlink (a regular file only), copied into the archive root,
    the chunk's copies recorded (committed), then each file unlinked if it is still the file
    that was copied. In a dry run, only counted."""

    def __init__(
        self,
        conn: psycopg.Connection,
        archive_root: Path | None,
        run_id: int | None,
        dry_run: bool,
        origins: dict[int, tuple[str, str]],
    ) -> None:
        self.conn = conn
        self.root = archive_root
        self.run_id = run_id
        self.dry_run = dry_run
        self.origins = origins

    def __call__(self, located: Located) -> list[Unlinked]:
        counts: Counter[str] = Counter()
        done: list[int] = []
        failed: list[tuple[int, str]] = []
        copied: list[tuple[safefs.Directory, bytes, os.stat_result, archive_files.Archived]] = []
        for parent, members in located:
            for entry_id, name in members:
                if self.root is None:
                    failed.append(
                        (
                            entry_id,
                            "queued with archive_files but [archive] has no root: kept until "
                            "it can be copied",
                        )
                    )
                    continue
                try:
                    found = self._copy(parent, entry_id, name)
                except FileNotFoundError:
                    counts["missing"] += 1
                    done.append(entry_id)
                    continue
                except OSError as exc:
                    failed.append((entry_id, _copy_error(exc)))
                    continue
                if isinstance(found, str):
                    failed.append((entry_id, found))
                elif isinstance(found, os.stat_result):
                    counts.update(deleted=1, bytes=found.st_size)
                    counts.update(archived=1, archived_bytes=found.st_size)
                    done.append(entry_id)
                else:
                    copied.append((parent, name, found[0], found[1]))
        if copied:
            archive_files.record(self.conn, self.run_id, [c[3] for c in copied])
        for parent, name, info, archived in copied:
            counts.update(archived=1, archived_bytes=archived.copy.bytes)
            try:
                gone = parent.unlink_if(name, _same_file(info))
            except FileNotFoundError:
                counts["missing"] += 1
                done.append(archived.outbox_id)
                continue
            except OSError as exc:
                failed.append((archived.outbox_id, f"copied; {_describe(exc)}"))
                continue
            if gone is None:
                failed.append(
                    (archived.outbox_id, "replaced by another file since it was copied: kept")
                )
                continue
            counts.update(deleted=1, bytes=gone.st_size)
            done.append(archived.outbox_id)
        return [(counts, done, failed)]

    def _copy(
        self, parent: safefs.Directory, entry_id: int, name: bytes
    ) -> str | os.stat_result | tuple[os.stat_result, archive_files.Archived]:
        """The file's copy with its lstat; in a dry run its lstat alone; or why it is kept."""
        assert self.root is not None
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=parent.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "a symlink, not a regular file: neither copied nor deleted"
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return "not a regular file: neither copied nor deleted"
            if self.dry_run:
                return info
            copy = archive_files.copy(self.root, fd)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        if (after.st_size, after.st_mtime_ns) != (info.st_size, info.st_mtime_ns) or (
            copy.bytes != info.st_size
        ):
            return "changed while it was copied: kept, copied again by the next drain"
        root, path = self.origins[entry_id]
        return info, archive_files.Archived(outbox_id=entry_id, root=root, path=path, copy=copy)


def _same_file(info: os.stat_result) -> Callable[[os.stat_result], bool]:
    """Whether an lstat is of the file `info` describes (the one copied)."""
    return lambda now: (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino)


def _copy_error(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    return f"could not copy into the archive{where}: {_describe(exc)}; not deleted"


def drain(
    conn: psycopg.Connection,
    *,
    roots_allowed: Iterable[str | os.PathLike[str]],
    dry_run: bool,
    deadline: float,
    run_id: int | None = None,
    should_abort: Callable[[], bool] | None = None,
    batch_size: int = BATCH_SIZE,
    columns: Sequence[references.Column] = (),
    archive_root: str | os.PathLike[str] | None = None,
    limits: batches.Limits | None = None,
) -> results.OutboxSection:
    """Unlink the files of pending outbox entries, oldest first, batch by batch. `conn` must be
    in autocommit mode. An entry is removed only after its file is gone, so a drain killed at
    any point loses nothing (a file already gone counts as missing, i.e. done). While one batch
    is unlinked (in a worker thread), the previous one is recorded and the next one read.
    One drain at a time (an advisory lock): another drain finding it held steps aside. In a dry
    run nothing is unlinked nor recorded. Failed entries stay for the next run. Only entries whose
    root is one of `roots_allowed` (see configured_roots) are unlinked: any other is refused; and
    only files that no value of the file `columns` (every configured one) references. Entries
    queued with archive = true are copied under `archive_root` first (see _Copier). With the
    run's `limits`, its time budget and abort apply, and its pacing: each batch but the run's
    first waits for pause_between_batches and for the replicas (batches.Pacer)."""
    pacer: batches.Pacer | None = None
    paced = batches.PaceCounts()
    if limits is not None:
        deadline, should_abort = limits.deadline, limits.should_abort
        pacer = batches.Pacer(conn, limits, paced, dry_run=dry_run, name="files")
    allowed = frozenset(str(roots.normalise(Path(root))) for root in roots_allowed)
    totals: Counter[str] = Counter()
    stopped: results.StopReason | None = None
    if not dry_run and not _lock(conn):
        stopped = results.StopReason.DRAIN_BUSY
    else:
        directories = safefs.Roots(OPEN_DIRECTORIES)
        copying = safefs.Roots(max(1, OPEN_DIRECTORIES // 4))
        copier = _Copier(
            conn, Path(archive_root) if archive_root is not None else None, run_id, dry_run, {}
        )
        try:
            with (
                concurrent.futures.ThreadPoolExecutor(1, "outbox-unlink") as pool,
                concurrent.futures.ThreadPoolExecutor(1, "outbox-unlink-helper") as helper,
            ):
                stopped = _pipeline(
                    conn,
                    pool,
                    helper,
                    _Checks(conn, list(columns)),
                    directories,
                    allowed,
                    totals,
                    copying,
                    copier,
                    dry_run,
                    deadline,
                    should_abort,
                    batch_size,
                    pacer,
                )
        finally:
            directories.close()
            copying.close()
            if not dry_run:
                conn.execute(queries.text("outbox_unlock"))
    left = backlog(conn)
    result = results.OutboxSection(
        deleted=totals["deleted"],
        bytes=totals["bytes"],
        failed=totals["failed"],
        pending=left["pending"],
        refused=totals["refused"],
        missing=totals["missing"],
        referenced=totals["referenced"],
        archived=totals["archived"] if archive_root is not None else None,
        archived_bytes=totals["archived_bytes"] if archive_root is not None else None,
        stopped=stopped,
        pacing=paced.pacing(limits.paced) if limits is not None else None,
    )
    logger.info(
        "file outbox drained: %s deleted, %s failed, %s pending",
        result.deleted,
        result.failed,
        result.pending,
        extra={"action": "outbox_drained", "run_id": run_id, "dry_run": dry_run},
    )
    return result


class _Checks:
    """The references a drain checks its entries against: the file columns' values ending in a
    pending entry's name, read at the first batch, and each batch's recheck of the indexed
    columns for rows written since."""

    def __init__(self, conn: psycopg.Connection, columns: list[references.Column]) -> None:
        self.conn = conn
        self.columns = columns
        self.named: references.Named | None = None
        self.since: Any = None

    def load(self, upto: int) -> references.Named | None:
        """Read the values that may name the files of the entries up to `upto`."""
        if self.named is None and self.columns:
            row = self.conn.execute(f"SELECT now() - interval '{RECENT}'").fetchone()
            assert row is not None
            self.since = row[0]
            self.named = references.Named(self.columns)
            self.named.load(self.conn, "references_named_in_outbox", upto=upto)
        return self.named

    def keep(self, rows: list[Entry]) -> frozenset[int]:
        """The entries of a batch that an indexed column references now."""
        if not any(column.recheck is not None for column in self.columns):
            return frozenset()
        by_path: dict[str, list[int]] = {}
        for entry_id, root, stored in rows:
            by_path.setdefault(references.normalise(root, stored), []).append(entry_id)
        with self.conn.cursor() as cur:
            found = references.recheck(cur, self.columns, by_path, self.since)
        return frozenset(entry_id for path in found for entry_id in by_path[path])


def _lock(conn: psycopg.Connection) -> bool:
    row = conn.execute(queries.text("outbox_try_lock")).fetchone()
    return bool(row and row[0])


def _pipeline(
    conn: psycopg.Connection,
    pool: concurrent.futures.Executor,
    helper: concurrent.futures.Executor,
    checks: _Checks,
    directories: safefs.Roots,
    allowed: frozenset[str],
    totals: Counter[str],
    copying: safefs.Roots,
    copier: _Copier,
    dry_run: bool,
    deadline: float,
    should_abort: Callable[[], bool] | None,
    batch_size: int,
    pacer: batches.Pacer | None = None,
) -> results.StopReason | None:
    query = queries.text("outbox_batch")
    row = conn.execute(queries.text("outbox_newest")).fetchone()
    upto = row[0] if row else 0

    def read(after: int) -> list[Queued]:
        return conn.execute(query, {"after": after, "upto": upto, "limit": batch_size}).fetchall()

    rows = read(0)
    named = checks.load(upto) if rows else None
    settled: Settled | None = None
    stopped: results.StopReason | None = None
    while rows:
        if should_abort is not None and should_abort():
            stopped = results.StopReason.ABORTED
            break
        if time.monotonic() >= deadline:
            stopped = results.StopReason.TIME_BUDGET
            break
        if pacer is not None:
            stopped = pacer.before_batch()
            if stopped is not None:
                break
        entries: list[Entry] = [(entry_id, root, path) for entry_id, root, path, _ in rows]
        keep = checks.keep(entries) if named is not None else frozenset()
        # A file some entry of the batch archives is handled with those entries only (never
        # unlinked by the pool while it is being copied).
        copied = {(root, path) for _, root, path, archive in rows if archive}
        marked = [e for e in entries if (e[1], e[2]) in copied]
        plain = [e for e in entries if (e[1], e[2]) not in copied] if copied else entries
        work = pool.submit(_settle, plain, dry_run, directories, allowed, helper, named, keep)
        if settled is not None:
            _record(conn, settled, totals, dry_run)
        if marked:
            copier.origins = {entry_id: (root, path) for entry_id, root, path in marked}
            copies = _settle(marked, dry_run, copying, allowed, None, named, keep, copier)
            _record(conn, copies, totals, dry_run)
        following = read(rows[-1][0]) if len(rows) == batch_size else []
        settled = work.result()
        if pacer is not None:
            pacer.after_batch()
        rows = following
    if settled is not None:
        _record(conn, settled, totals, dry_run)
    return stopped


def _record(
    conn: psycopg.Connection, settled: Settled, totals: Counter[str], dry_run: bool
) -> None:
    counts, done, failed, refused = settled
    if not dry_run:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(queries.text("outbox_transaction"))
            if done:
                cur.execute(queries.text("outbox_done"), {"ids": done})
            for name, entries in (("outbox_failed", failed), ("outbox_refused", refused)):
                if entries:
                    cur.execute(
                        queries.text(name),
                        {"ids": [e[0] for e in entries], "errors": [e[1] for e in entries]},
                    )
    totals.update(counts)
    totals["failed"] += len(failed)
    totals["refused"] += len(refused)
    for entry_id, error in failed:
        logger.warning(
            "could not delete outbox file #%s: %s",
            entry_id,
            error,
            extra={"action": "file_failed", "outbox_id": entry_id},
        )
    for entry_id, error in refused:
        logger.warning(
            "refused outbox file #%s: %s",
            entry_id,
            error,
            extra={"action": "file_refused", "outbox_id": entry_id},
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
