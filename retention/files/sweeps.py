"""What directory and orphan sweeps share: a walk of a root that never follows symlinks, a listing
streamed into a temporary table, and the engine target that deletes the listed files.

A sweep first lists what it would delete (a TEMP table on the work connection, filled with COPY,
so memory stays bounded whatever the number of files), then walks that list through the engine,
oldest first: a dry run previews the same batches the real run deletes. Before each unlink the
file is looked at again (still a regular file, still old enough, still inside the root). A file
that cannot be deleted stays where it is, counted as failed with its error in the run's summary:
the next sweep finds it again and checks it again (its age, its references) before retrying it.
Nothing a sweep finds goes to the file outbox, whose entries are trusted less (see outbox).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import stat
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from retention import errors
from retention.config import roots
from retention.engine import batches, results
from retention.files import safefs
from retention.pg import queries

logger = logging.getLogger(__name__)

SAMPLE_SIZE = 10


def check_sweep_root(root: Path) -> Path:
    """The real directory swept under `root`; ConfigError when it fails the root check (see
    config.roots.check_root) or is missing or not a directory."""
    found = roots.problem(root)
    if found:
        raise errors.ConfigError(found)
    real = Path(os.path.realpath(roots.normalise(root)))
    if not real.is_dir():
        raise errors.ConfigError(
            f"root {str(root)!r} does not exist or is not a directory: create it, or fix the "
            "path in the configuration"
        )
    return real


class Found(NamedTuple):
    """An entry met by the walk; `rel` is the path relative to the root, as bytes. The entry's
    `stat(follow_symlinks=False)` is valid until the walk moves on."""

    parent: bytes
    rel: bytes
    entry: os.DirEntry[str]


def walk(real_root: Path, problems: Counter[str]) -> Iterator[Found]:
    """Every entry under `real_root`, depth first, each directory listed through a descriptor
    walked down from the root (safefs); symlinks are reported, never followed, and directories
    behind them never entered. Unreadable directories (or one that became a symlink since it was
    met) are counted in `problems`."""
    base = os.fsencode(real_root)
    with safefs.Walker(real_root, follow_links=False) as walker:
        stack: list[bytes] = [b""]
        while stack:
            rel_dir = stack.pop()
            with contextlib.ExitStack() as listing:
                try:
                    entries = listing.enter_context(walker.scandir(rel_dir))
                except FileNotFoundError:
                    continue
                except (OSError, safefs.UnsafePath) as exc:
                    problems["unreadable"] += 1
                    logger.warning(
                        "cannot list %s: %s",
                        os.fsdecode(os.path.join(base, rel_dir)),
                        exc.strerror if isinstance(exc, OSError) else exc,
                        extra={"action": "sweep_unreadable", "root": str(real_root)},
                    )
                    continue
                for entry in entries:
                    name = os.fsencode(entry.name)
                    rel = rel_dir + b"/" + name if rel_dir else name
                    yield Found(parent=rel_dir, rel=rel, entry=entry)
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(rel)
                    except OSError:
                        problems["unreadable"] += 1


class Listing:
    """A TEMP table of files (id, rel, size, mtime) on `conn`, filled by `fill` through COPY."""

    def __init__(self, conn: psycopg.Connection, name: str) -> None:
        self.conn = conn
        self.table = sql.Identifier(name)
        self.count = 0
        conn.execute(queries.get("sweep_listing_create").format(table=self.table))

    def fill(self, rows: Iterable[tuple[bytes, int, float]]) -> None:
        with (
            self.conn.cursor() as cur,
            cur.copy(queries.get("sweep_listing_copy").format(table=self.table)) as copy,
        ):
            copy.set_types(["bigint", "bytea", "bigint", "float8"])
            for rel, size, mtime in rows:
                self.count += 1
                copy.write_row((self.count, rel, size, mtime))

    def index(self) -> None:
        self.conn.execute(queries.get("sweep_index").format(table=self.table))

    def drop(self) -> None:
        self.conn.execute(queries.get("sweep_drop").format(table=self.table))


Recheck = Callable[[psycopg.Cursor[Any], list[bytes]], set[bytes]]


class FileDeleter:
    """Deletes (or previews) the listed files of one batch. `recheck` names files that must now
    be kept after all (an orphan referenced since the listing); `cutoff` is the newest mtime a
    file may have to go."""

    def __init__(
        self,
        *,
        root: Path,
        real_root: Path,
        source: str,
        cutoff: float,
        run_id: int | None,
        sample_size: int = SAMPLE_SIZE,
        recheck: Recheck | None = None,
    ) -> None:
        self.root = root
        self.real_root = real_root
        self.source = source
        self.cutoff = cutoff
        self.run_id = run_id
        self.sample_size = sample_size
        self.recheck = recheck
        self.sample: list[str] = []
        self.errors: list[str] = []
        self._walker: safefs.Walker | None = None
        self._closer: weakref.finalize[[], FileDeleter] | None = None

    def _walk(self) -> safefs.Walker:
        """The walker of the root (safefs), opened at the first file and kept for the sweep:
        closed by `close`, or when the deleter goes."""
        if self._walker is None:
            self._walker = safefs.Walker(self.real_root, follow_links=False)
            self._closer = weakref.finalize(self, self._walker.close)
        return self._walker

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
        self._walker = self._closer = None

    def _wanted(self, info: os.stat_result) -> bool:
        return stat.S_ISREG(info.st_mode) and info.st_mtime < self.cutoff

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        return self._settle(cur, ids, dry_run=False)

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]:
        return self._settle(cur, ids, dry_run=True)

    def _settle(self, cur: psycopg.Cursor[Any], ids: list[Any], *, dry_run: bool) -> dict[str, int]:
        """`ids` are the paths (bytes, relative to the root) of one batch, oldest first."""
        rels = [bytes(rel) for rel in ids]
        keep = self.recheck(cur, rels) if self.recheck else set()
        queued = self._queued(cur, rels)
        counts: Counter[str] = Counter(deleted=0, bytes=0, failed=0)
        batch = self._batch()
        for rel in rels:
            if rel in keep:
                counts["referenced"] += 1
                continue
            if rel in queued:
                counts["queued"] += 1
                continue
            outcome, size, error = self._one(batch, rel, dry_run)
            counts[outcome] += 1
            if outcome == "deleted":
                counts["bytes"] += size
                if len(self.sample) < self.sample_size:
                    self.sample.append(safefs.display(os.path.join(os.fsencode(self.root), rel)))
            elif outcome == "failed":
                self._failed(rel, error)
        return dict(counts)

    def _batch(self) -> Any:
        """What `_one` deletes a batch's files through: the root's walker batch (or why not)."""
        try:
            return self._walk().batch()
        except OSError as exc:
            return exc

    def _one(self, batch: Any, rel: bytes, dry_run: bool) -> tuple[str, int, str]:
        """A regular file old enough goes; anything else at its name is `changed` and stays.
        Returns the outcome (deleted, missing, changed, refused, failed), its size, an error."""
        try:
            if isinstance(batch, OSError):
                raise batch.with_traceback(None)
            info = batch.unlink_if(rel, self._wanted, dry_run=dry_run)
            if info is None:
                return "changed", 0, ""
        except FileNotFoundError:
            return "missing", 0, ""
        except safefs.UnsafePath as exc:
            return "refused", 0, str(exc)
        except OSError as exc:
            return "failed", 0, f"{type(exc).__name__}: {exc.strerror or exc}"
        return "deleted", info.st_size, ""

    def _failed(self, rel: bytes, error: str) -> None:
        shown = safefs.display(rel)
        logger.warning(
            "could not delete %s under %s: %s",
            shown,
            self.root,
            error,
            extra={"action": "sweep_file_failed", "root": str(self.root), "source": self.source},
        )
        if len(self.errors) < self.sample_size:
            self.errors.append(f"{shown}: {error}")

    def _queued(self, cur: psycopg.Cursor[Any], rels: list[bytes]) -> set[bytes]:
        texts = []
        for rel in rels:
            try:
                texts.append(rel.decode("utf-8"))
            except UnicodeDecodeError:
                continue
        if not texts:
            return set()
        found = cur.execute(
            queries.text("sweep_already_queued"), {"root": str(self.root), "paths": texts}
        ).fetchall()
        return {row[0].encode("utf-8") for row in found}


def target(name: str, listing: Listing, deleter: FileDeleter) -> batches.Target:
    """The engine's walk over a listing, oldest file first."""
    row = listing.conn.execute(queries.get("sweep_bounds").format(table=listing.table)).fetchone()
    assert row is not None
    oldest: float | None = row[2]
    newest: float | None = row[3]

    def params(after: tuple[Any, ...], limit: int) -> dict[str, Any]:
        return {"after_at": after[0], "after_id": after[1], "limit": limit}

    def progress(key: tuple[Any, ...]) -> float:
        if oldest is None or newest is None or newest <= oldest:
            return 1.0
        mtime: float = key[0]
        return (mtime - oldest) / (newest - oldest)

    segments = []
    if row[0]:
        segments.append(
            batches.Segment(
                name=name,
                select=queries.get("sweep_select").format(table=listing.table),
                params=params,
                start=(float("-inf"), 0),
                key=("mtime", "entry"),
                progress=progress,
            )
        )
    return batches.Target(name=name, segments=segments, deleter=deleter)


ProgressCallback = Callable[[results.SweepSection, float], None]


def reporting(
    deleter: FileDeleter, on_progress: ProgressCallback | None
) -> batches.ProgressCallback | None:
    """The engine's progress callback of a sweep: its partial section, and how far it is."""
    if on_progress is None:
        return None
    report = on_progress

    def partial(result: batches.Result) -> None:
        report(section(result.freeze(), deleter), result.fraction)

    return partial


def section(walk: results.Walk, deleter: FileDeleter, **details: Any) -> results.SweepSection:
    """A root's part of a run summary."""
    return results.SweepSection(
        walk=walk,
        oldest_mtime=_iso(walk.oldest),
        sample=tuple(deleter.sample),
        errors=tuple(deleter.errors),
        details=details,
    )


def _iso(mtime: float | None) -> str | None:
    if mtime is None:
        return None
    return dt.datetime.fromtimestamp(mtime, dt.UTC).isoformat(timespec="seconds")
