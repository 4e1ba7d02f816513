"""Directory age sweeps: `[[directories]]` policies for directories no table describes.

Under each root, the regular files whose mtime is older than the policy's age and whose path
relative to the root matches an `include` glob and no `exclude` glob are listed, then deleted
through the engine (oldest first; a dry run walks the same list). Globs match the whole relative
path and `*` also matches `/` (`*.tmp` matches `a/b/c.tmp`). With `remove_empty_dirs`, the
directories the sweep leaves empty go too, deepest first, never the root; so do empty directories
untouched for longer than the age.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from retention.config import globs, policies
from retention.config import settings as settings_mod
from retention.engine import batches, results
from retention.files import references, safefs, sweeps

logger = logging.getLogger(__name__)

TABLE = "retention_directory_files"


def source(root: Path) -> str:
    return f"directory:{root}"


class _Tree:
    """Per directory met by the walk: how many entries, how many of them the sweep deletes, its
    mtime. Enough to tell, bottom-up, which directories the sweep leaves empty."""

    def __init__(self) -> None:
        self.entries: Counter[bytes] = Counter()
        self.doomed: Counter[bytes] = Counter()
        self.mtimes: dict[bytes, float] = {}

    def emptied(self, cutoff: float) -> list[bytes]:
        """Directories (relative paths, deepest first) that would be empty after the sweep."""
        out: list[bytes] = []
        for rel in sorted(self.mtimes, key=lambda r: r.count(b"/"), reverse=True):
            doomed = self.doomed[rel]
            if self.entries[rel] == doomed and (doomed > 0 or self.mtimes[rel] < cutoff):
                out.append(rel)
                self.doomed[os.path.dirname(rel)] += 1
        return out


def _matcher(patterns: list[str]) -> Callable[[str], bool]:
    compiled = [re.compile(globs.to_regex(p), re.DOTALL) for p in patterns]
    return lambda rel: any(c.match(rel) for c in compiled)


def _candidates(
    real_root: Path,
    policy: policies.DirectoryPolicy,
    cutoff: float,
    tree: _Tree,
    problems: Counter[str],
) -> Iterator[tuple[bytes, int, float]]:
    include = _matcher(policy.include)
    exclude = _matcher(policy.exclude)
    for found in sweeps.walk(real_root, problems):
        tree.entries[found.parent] += 1
        entry = found.entry
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            problems["unreadable"] += 1
            continue
        if entry.is_dir(follow_symlinks=False):
            tree.mtimes[found.rel] = info.st_mtime
            continue
        if not entry.is_file(follow_symlinks=False) or info.st_mtime >= cutoff:
            continue
        rel = os.fsdecode(found.rel)
        if include(rel) and not exclude(rel):
            tree.doomed[found.parent] += 1
            yield found.rel, info.st_size, info.st_mtime


def check(settings: settings_mod.Settings) -> list[policies.DirectoryPolicy]:
    """The enabled directory policies, each root checked (ConfigError before anything runs)."""
    policies = [p for p in settings.directories if p.enabled]
    for policy in policies:
        sweeps.check_sweep_root(policy.root)
    return policies


def sweep(
    conn: psycopg.Connection,
    settings: settings_mod.Settings,
    policy: policies.DirectoryPolicy,
    *,
    dry_run: bool,
    limits: batches.Limits,
    run_id: int | None,
    on_progress: sweeps.ProgressCallback | None = None,
) -> results.SweepSection:
    """List, then delete (or preview), the old files of one directory policy."""
    real_root = sweeps.check_sweep_root(policy.root)
    cutoff = time.time() - policy.age.total_seconds()
    tree = _Tree()
    problems: Counter[str] = Counter()
    listing = sweeps.Listing(conn, TABLE)
    try:
        listing.fill(_candidates(real_root, policy, cutoff, tree, problems))
        listing.index()
        deleter = sweeps.FileDeleter(
            root=policy.root,
            real_root=real_root,
            source=source(policy.root),
            cutoff=cutoff,
            run_id=run_id,
        )
        target = sweeps.target(source(policy.root), listing, deleter)
        result = batches.run(
            conn,
            target,
            limits,
            dry_run=dry_run,
            on_progress=sweeps.reporting(deleter, on_progress),
        )
    finally:
        listing.drop()
    extra: dict[str, Any] = {"listed": listing.count, **problems}
    if policy.remove_empty_dirs and not result.stopped:
        extra.update(_remove_empty(real_root, tree.emptied(cutoff), dry_run))
    shared = overlapping_columns(settings, policy.root)
    if shared:
        extra["warnings"] = [
            f"{policy.root} overlaps the storage root of {', '.join(shared)}: files that rows "
            "reference are deleted by age too; narrow the root or the include globs"
        ]
        logger.warning(
            extra["warnings"][0],
            extra={"action": "directory_overlaps_table", "root": str(policy.root)},
        )
    data = sweeps.section(result.freeze(), deleter, **extra)
    logger.info(
        "directory sweep of %s: %s deleted",
        policy.root,
        data.deleted,
        extra={"action": "directory_swept", "root": str(policy.root), "dry_run": dry_run},
    )
    return data


def _remove_empty(real_root: Path, emptied: list[bytes], dry_run: bool) -> dict[str, Any]:
    """rmdir of each emptied directory through a walk from the root (safefs) that follows no
    symlink: one whose path now goes through a symlink, or that is no longer an empty directory,
    stays."""
    removed = 0
    sample: list[str] = []
    with safefs.Walker(real_root, follow_links=False) as walker:
        for rel in emptied:
            try:
                walker.rmdir(rel, dry_run=dry_run)
            except (safefs.UnsafePath, OSError):
                continue
            removed += 1
            if len(sample) < sweeps.SAMPLE_SIZE:
                sample.append(safefs.display(rel))
    return {"dirs_removed": removed, "dirs_sample": sample}


def overlapping_columns(settings: settings_mod.Settings, root: Path) -> list[str]:
    """File columns of the table policies whose storage root contains, or lies in, `root`."""
    return sorted(
        {
            f"{ref.table}.{ref.column}"
            for ref in references.references(settings)
            if ref.root.is_relative_to(root) or root.is_relative_to(ref.root)
        }
    )
