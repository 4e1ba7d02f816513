"""Orphaned files: files under the table policies' storage roots that no row references.

For each storage root of a file column that deletes its files (`delete = true`), the regular
files older than the grace period are listed into a TEMP table (COPY, bounded memory), every
configured file column whose root overlaps it (including `delete = false` columns: their files are
referenced too) is normalised in PostgreSQL into a second TEMP table, and the referenced ones are
removed by a join: what is left is orphaned. The engine then deletes those files oldest first, and
each batch asks the tables once more whether a row references one of them since the listing.
Symlinks are never followed; a stored path that goes through a symlink inside the root keeps the
file it leads to.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from retention import errors
from retention.config import settings as settings_mod
from retention.engine import batches, results
from retention.files import references, sweeps
from retention.pg import queries

logger = logging.getLogger(__name__)

TABLE = "retention_orphan_files"
LINK_ROUNDS = 4


def roots(settings: settings_mod.Settings) -> list[Path]:
    """Storage roots swept for orphans: those of columns that delete their files; a root inside
    another one is swept with it."""
    wanted = sorted(
        {ref.root for ref in references.references(settings) if ref.delete and not ref.storage}
    )
    return [root for root in wanted if not any(root.is_relative_to(o) for o in wanted if o != root)]


def source(root: Path) -> str:
    return f"orphans:{root}"


def _list(
    real_root: Path, cutoff: float, links: list[tuple[bytes, bytes]], problems: Counter[str]
) -> Iterator[tuple[bytes, int, float]]:
    for found in sweeps.walk(real_root, problems):
        entry = found.entry
        if entry.is_symlink():
            try:
                target = os.path.realpath(os.path.join(os.fsencode(real_root), found.rel))
            except OSError:
                # Changed while it was resolved (a link swapped under the sweep): counted; a
                # reference through it is not followed this time.
                problems["unreadable"] += 1
                continue
            base = os.fsencode(real_root) + b"/"
            if target.startswith(base):
                links.append((found.rel, target[len(base) :]))
            continue
        if not entry.is_file(follow_symlinks=False):
            continue
        problems["files"] += 1
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            problems["unreadable"] += 1
            continue
        if info.st_mtime < cutoff:
            yield found.rel, info.st_size, info.st_mtime


def _collect_references(
    conn: psycopg.Connection,
    columns: list[references.Column],
    root: Path,
    real_root: Path,
    links: list[tuple[bytes, bytes]],
) -> None:
    conn.execute(queries.text("orphan_setup"))
    prefixes = [f"{root}/", f"{real_root}/"]
    for found in columns:
        ref = found.ref
        query = queries.get("orphan_refs_insert").format(
            table=found.table, column=sql.Identifier(ref.column)
        )
        spellings = [ref.root] + ([ref.real_root] if ref.real_root != ref.root else [])
        for index, column_root in enumerate(spellings):
            conn.execute(
                query,
                {
                    "column_root": str(column_root),
                    "relative_only": index > 0,
                    "prefix1": prefixes[0],
                    "len1": len(prefixes[0]),
                    "prefix2": prefixes[1],
                    "len2": len(prefixes[1]),
                },
            )
    _collect_aliases(conn, columns, real_root, prefixes)
    if not links:
        return
    with conn.cursor() as cur, cur.copy(queries.text("orphan_links_copy")) as copy:
        copy.set_types(["bytea", "bytea"])
        for link in links:
            copy.write_row(link)
    for round_ in range(1, LINK_ROUNDS + 1):
        added = conn.execute(queries.text("orphan_refs_through_links"), {"round": round_})
        if not added.rowcount:
            break


def _collect_aliases(
    conn: psycopg.Connection, columns: list[references.Column], real_root: Path, prefixes: list[str]
) -> None:
    """References spelled through another path to a directory inside the root (a deploy-style
    `current/` link, a bind mount): each such directory is resolved on disk once."""
    base = f"{real_root}/"
    resolved: dict[str, str | None] = {}
    found: set[bytes] = set()
    for column in columns:
        query = queries.get("orphan_foreign_refs").format(
            table=column.table, column=sql.Identifier(column.ref.column)
        )
        params = {
            "column_root": str(column.ref.root),
            "prefix1": prefixes[0],
            "len1": len(prefixes[0]),
            "prefix2": prefixes[1],
            "len2": len(prefixes[1]),
        }
        with conn.cursor() as cur:
            for (path,) in cur.execute(query, params):
                directory, _, name = path.rpartition("/")
                if directory not in resolved:
                    real = os.path.realpath(directory or "/")
                    if real == str(real_root):
                        resolved[directory] = ""
                    elif real.startswith(base):
                        resolved[directory] = real[len(base) :] + "/"
                    else:
                        resolved[directory] = None
                inside = resolved[directory]
                if inside is not None and name:
                    found.add(os.fsencode(inside + name))
    if not found:
        return
    with conn.cursor() as cur, cur.copy(queries.text("orphan_refs_copy")) as copy:
        copy.set_types(["bytea"])
        for rel in found:
            copy.write_row((rel,))


def _recheck(
    columns: list[references.Column], root: Path, real_root: Path, since: dt.datetime
) -> sweeps.Recheck:
    """Which files of a batch some row references now, in any spelling a column may store."""

    def recheck(cur: psycopg.Cursor[Any], rels: list[bytes]) -> set[bytes]:
        paths: dict[str, bytes] = {}
        for rel in rels:
            try:
                text = rel.decode("utf-8")
            except UnicodeDecodeError:
                continue
            for base in {root, real_root}:
                paths[f"{base}/{text}"] = rel
        found = references.recheck(cur, columns, paths, since)
        return {paths[path] for path in found}

    return recheck


def section(
    result: batches.Result,
    deleter: sweeps.FileDeleter,
    listing: sweeps.Listing,
    referenced: int,
    problems: Counter[str],
    **details: Any,
) -> results.SweepSection:
    """An orphan sweep's part of the summary (a root's or a storage's): the files the batches'
    recheck kept are reported as referenced since the listing, not as kept by the walk."""
    walk = result.freeze()
    since_listing = walk.counts.get("referenced", 0)
    if since_listing:
        counts = {k: v for k, v in walk.counts.items() if k != "referenced"}
        walk = dataclasses.replace(walk, counts=counts)
        problems["referenced_since_listing"] = since_listing
    files = problems.pop("files", 0)
    return sweeps.section(
        walk,
        deleter,
        files=files,
        older_than_grace=listing.count,
        referenced_old=referenced,
        **details,
        **problems,
    )


def sweep_root(
    conn: psycopg.Connection,
    settings: settings_mod.Settings,
    root: Path,
    *,
    dry_run: bool,
    limits: batches.Limits,
    run_id: int | None,
    sample_size: int = sweeps.SAMPLE_SIZE,
    on_progress: sweeps.ProgressCallback | None = None,
) -> results.SweepSection:
    """List, match against the rows, then delete (or preview) the orphans under one root."""
    real_root = sweeps.check_sweep_root(root)
    cutoff = time.time() - settings.orphans.grace.total_seconds()
    grace = settings.orphans.grace
    columns = references.resolve(
        conn, [ref for ref in references.references(settings) if ref.overlaps(root, real_root)]
    )
    unchecked = sorted({f"{c.ref.table}.{c.ref.column}" for c in columns if c.recheck is None})
    if unchecked:
        logger.info(
            "no index to re-check %s before each batch: add an index on the column (or on the "
            "policy's timestamp) to narrow the window of a row written during the sweep",
            ", ".join(unchecked),
            extra={"action": "orphans_unchecked", "columns": unchecked},
        )
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    since = row[0] - grace
    problems: Counter[str] = Counter()
    links: list[tuple[bytes, bytes]] = []
    listing = sweeps.Listing(conn, TABLE)
    clock = [time.monotonic()]
    try:
        listing.fill(_list(real_root, cutoff, links, problems))
        clock.append(time.monotonic())
        _collect_references(conn, columns, root, real_root, links)
        referenced = conn.execute(
            queries.get("orphan_drop_referenced").format(table=listing.table)
        ).rowcount
        listing.index()
        clock.append(time.monotonic())
        deleter = sweeps.FileDeleter(
            root=root,
            real_root=real_root,
            source=source(root),
            cutoff=cutoff,
            run_id=run_id,
            sample_size=sample_size,
            recheck=_recheck(columns, root, real_root, since),
        )
        target = sweeps.target(source(root), listing, deleter)
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
    clock.append(time.monotonic())
    data = section(
        result,
        deleter,
        listing,
        referenced,
        problems,
        unchecked_columns=unchecked,
        seconds={
            stage: round(end - start, 3)
            for stage, start, end in zip(
                ("listing", "matching", "deleting"), clock[:-1], clock[1:], strict=True
            )
        },
    )
    logger.info(
        "orphan sweep of %s: %s deleted",
        root,
        data.deleted,
        extra={"action": "orphans_swept", "root": str(root), "dry_run": dry_run},
    )
    return data


def check(
    conn: psycopg.Connection, settings: settings_mod.Settings, only: list[Path] | None = None
) -> list[Path]:
    """The roots a sweep goes through (every storage root, or the `only` ones), each checked,
    and every file column checked against the database: ConfigError before anything runs."""
    chosen = check_only(settings, only) if only else roots(settings)
    for root in chosen:
        sweeps.check_sweep_root(root)
    references.resolve(conn, references.references(settings))
    return chosen


def check_only(settings: settings_mod.Settings, only: list[Path]) -> list[Path]:
    """The roots an operator named, each one a configured storage root (or inside one)."""
    available = roots(settings)
    if not available:
        raise errors.ConfigError(no_roots_message())
    real_roots = [Path(os.path.realpath(r)) for r in available]
    chosen: list[Path] = []
    for given in only:
        root = Path(os.path.normpath(given))
        real = Path(os.path.realpath(root)) if root.is_absolute() else None
        named = root.is_absolute() and any(root.is_relative_to(r) for r in available)
        if not named or real is None or not any(real.is_relative_to(r) for r in real_roots):
            where = f" (it resolves to {str(real)!r})" if named and real is not None else ""
            raise errors.ConfigError(
                f"--root {str(given)!r} is not a storage root of the table policies{where}; "
                f"use one of: {', '.join(str(r) for r in available)}"
            )
        chosen.append(root)
    return chosen


def no_roots_message() -> str:
    return (
        "no storage root to sweep: orphans are looked for under the roots of [[tables]] file "
        "columns that delete their files (files = [{column = ..., root = ..., delete = true}])"
    )
