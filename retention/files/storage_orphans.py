"""Orphaned files of application storages (a Django storage that is not a local directory):
files a storage lists that no row of a file column on that storage names.

The same steps as the local orphan sweep (files/orphans.py), through the storage's own API: the
storage is listed (`listdir`, recursively) into a TEMP table with each file's size and
modification time (`size`, `get_modified_time`), only files older than the grace period; every
file column whose storage is the same storage object is matched against the listing in
PostgreSQL; the engine then deletes what is left, oldest first, each batch asking the indexed
columns again and each file's modification time looked at again before `delete`. Names a storage
could resolve elsewhere (absolute, `..`) are never listed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from retention.config import policies
from retention.config import settings as settings_mod
from retention.engine import batches, results
from retention.files import orphans, references, storages, sweeps
from retention.pg import queries

logger = logging.getLogger(__name__)

TABLE = "retention_storage_orphan_files"


def keys(settings: settings_mod.Settings) -> list[str]:
    """The storages swept: those of file columns that delete their files, registered in this
    process, one key per storage object (columns sharing a storage are swept once)."""
    found: list[str] = []
    seen: set[int] = set()
    for ref in references.references(settings):
        if not (ref.storage and ref.delete):
            continue
        key = str(ref.root)[len(policies.STORAGE_PREFIX) :]
        storage = storages.get(key)
        if storage is None:
            logger.warning(
                "orphans: the storage %s is not registered in this process (run the sweep where "
                "the application's storages are configured, e.g. ./manage.py retention run)",
                key,
                extra={"action": "storage_not_registered", "storage": key},
            )
            continue
        if id(storage) not in seen:
            seen.add(id(storage))
            found.append(key)
    return found


def _same_storage(settings: settings_mod.Settings, key: str) -> list[references.Reference]:
    storage = storages.get(key)
    return [
        ref
        for ref in references.references(settings)
        if ref.storage and storages.get(str(ref.root)[len(policies.STORAGE_PREFIX) :]) is storage
    ]


def _walk(storage: Any, prefix: str = "") -> Iterator[str]:
    directories, files = storage.listdir(prefix)
    for name in files:
        yield prefix + name
    for directory in directories:
        yield from _walk(storage, f"{prefix}{directory}/")


def _mtime(storage: Any, name: str) -> float:
    stamp: dt.datetime = storage.get_modified_time(name)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def _list(
    storage: Any, cutoff: float, problems: Counter[str]
) -> Iterator[tuple[bytes, int, float]]:
    for name in _walk(storage):
        problems["files"] += 1
        if storages.unsafe_name(name) is not None:
            problems["refused"] += 1
            continue
        try:
            mtime = _mtime(storage, name)
            size = int(storage.size(name))
        except Exception:  # a storage's own error for one file: leave it
            problems["unreadable"] += 1
            continue
        if mtime < cutoff:
            yield name.encode("utf-8", "surrogateescape"), size, mtime


class StorageDeleter(sweeps.FileDeleter):
    """The sweep's deleter through a storage's API: a file still old enough goes by `delete`."""

    def __init__(self, storage: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.storage = storage

    def _batch(self) -> Any:
        return self.storage

    def _one(self, batch: Any, rel: bytes, dry_run: bool) -> tuple[str, int, str]:
        name = rel.decode("utf-8", "surrogateescape")
        try:
            if not self.storage.exists(name):
                return "missing", 0, ""
            if _mtime(self.storage, name) >= self.cutoff:
                return "changed", 0, ""
            size = int(self.storage.size(name))
            if not dry_run:
                self.storage.delete(name)
        except Exception as exc:  # a storage's own error: counted, found again next sweep
            return "failed", 0, f"{type(exc).__name__}: {exc}"
        return "deleted", size, ""


def _recheck(columns: list[references.Column], base: str, since: dt.datetime) -> sweeps.Recheck:
    def recheck(cur: psycopg.Cursor[Any], rels: list[bytes]) -> set[bytes]:
        paths = {
            references.normalise(base, rel.decode("utf-8", "surrogateescape")): rel for rel in rels
        }
        return {paths[path] for path in references.recheck(cur, columns, paths, since)}

    return recheck


def sweep(
    conn: psycopg.Connection,
    settings: settings_mod.Settings,
    key: str,
    *,
    dry_run: bool,
    limits: batches.Limits,
    run_id: int | None,
    sample_size: int = sweeps.SAMPLE_SIZE,
    on_progress: sweeps.ProgressCallback | None = None,
) -> results.SweepSection:
    """List, match against the rows, then delete (or preview) the orphans of one storage."""
    storage = storages.get(key)
    assert storage is not None
    base = policies.STORAGE_PREFIX + key
    grace = settings.orphans.grace
    cutoff = time.time() - grace.total_seconds()
    columns = references.resolve(conn, _same_storage(settings, key))
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    since = row[0] - grace
    problems: Counter[str] = Counter()
    listing = sweeps.Listing(conn, TABLE)
    try:
        listing.fill(_list(storage, cutoff, problems))
        conn.execute(queries.text("orphan_setup"))
        for column in columns:
            conn.execute(
                queries.get("storage_refs_insert").format(
                    table=column.table, column=sql.Identifier(column.ref.column)
                )
            )
        referenced = conn.execute(
            queries.get("orphan_drop_referenced").format(table=listing.table)
        ).rowcount
        listing.index()
        deleter = StorageDeleter(
            storage,
            root=Path(base),
            real_root=Path(base),
            source=f"orphans:{base}",
            cutoff=cutoff,
            run_id=run_id,
            sample_size=sample_size,
            recheck=_recheck(columns, base, since),
        )
        target = sweeps.target(f"orphans:{base}", listing, deleter)
        result = batches.run(
            conn,
            target,
            limits,
            dry_run=dry_run,
            on_progress=sweeps.reporting(deleter, on_progress),
        )
    finally:
        listing.drop()
        conn.execute(queries.text("orphan_teardown"))
    data = orphans.section(result, deleter, listing, referenced, problems)
    logger.info(
        "orphan sweep of the storage %s: %s deleted",
        key,
        data.deleted,
        extra={"action": "storage_orphans_swept", "storage": key, "dry_run": dry_run},
    )
    return data
