"""The one batched-delete engine, shared by every kind of retention.

A target is a list of segments (keyset walks over an index) and a deleter. Each batch is one
short transaction: select the next keys after the last one seen, delete the eligible rows (or,
in a dry run, count what would go in a read-only transaction), commit; a segment with a `fused`
statement does both in one statement, sent with the rest of its batch in a pipeline. The batch
size adapts so that a transaction stays well under `max_batch_seconds`; a lock wait longer than
`lock_timeout` rolls the batch back and retries it (a fused walk then skips locked rows). The
walk stops between batches when the time budget is spent or the run is aborted; what is left is
found again by the next run, which starts from the beginning of each walk (deleted rows are gone,
so nothing already deleted is ever scanned again).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import operator
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

logger = logging.getLogger(__name__)

INITIAL_BATCH_SIZE = 500
MIN_BATCH_SIZE = 10
TARGET_SHARE = 0.5
MAX_BACKOFFS = 8
SAMPLE_SIZE = 5


class Deleter(Protocol):
    """Deletes (or, in a dry run, counts) the rows of one batch, inside its transaction."""

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]: ...

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class Segment:
    """One keyset walk. The query returns rows ordered by key: the `key_width` key columns, then
    the id of an eligible row (NULL for a row scanned but kept), then the `groups` columns.
    `oldest_column` is the column whose smallest non-NULL value is the summary's `oldest` (the
    first key column unless said otherwise; None: no oldest).

    `fused`, when given, is what a real run executes instead of the select and the deleter: one
    statement that selects and deletes the batch, with the select's parameters, and tallies it
    in SQL (`fused(skip_locked)`; with `skip_locked` False it may wait for a locked row, up to
    `lock_timeout`, after which the walk goes on with `fused(True)`, which skips such rows). It
    returns rows of: the last key scanned, how many rows were scanned, the `groups` values, how
    many rows of that group were deleted, the oldest of them (the `oldest_column` value), then
    the first ids deleted in key order (the same on every row; a `samples` parameter, when the
    segment's parameters have one, is set to how many the result still lacks). With nothing
    deleted, one row with NULL groups; with nothing scanned, no row. A dry run still uses the
    select and the deleter's preview.

    `counter`, when given, is (names, statement): the statement returns one row of integers,
    read before and after each fused batch inside its transaction; the differences go to the
    result's counts under those names (rows deleted by a cascade, which no RETURNING sees).

    `settings` are run-time parameters set for each batch's transaction only (SET LOCAL).

    `settle`, when given, runs once (with the start key's parameters) after a real walk that
    deleted rows has reached its end: a pass over the walk's index range, so that the entries of
    the rows just deleted are marked dead now (PostgreSQL does so for an index scan that finds a
    row dead to every transaction) rather than visited one by one by the next run."""

    name: str
    select: Callable[[bool], sql.Composable]
    params: Callable[[tuple[Any, ...], int], dict[str, Any]]
    start: tuple[Any, ...]
    key_width: int
    groups: tuple[str, ...] = ()
    progress: Callable[[tuple[Any, ...]], float] | None = None
    oldest_column: int | None = 0
    fused: Callable[[bool], sql.Composable] | None = None
    counter: tuple[tuple[str, ...], sql.Composable] | None = None
    settings: tuple[tuple[str, str], ...] = ()
    settle: Callable[[], sql.Composable] | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    segments: Sequence[Segment]
    deleter: Deleter


@dataclasses.dataclass(kw_only=True)
class Limits:
    batch_size: int
    max_batch_seconds: float
    lock_timeout: dt.timedelta
    deadline: float
    should_abort: Callable[[], bool] = lambda: False

    def stop_reason(self) -> str | None:
        if self.should_abort():
            return "aborted"
        if time.monotonic() >= self.deadline:
            return "time budget spent"
        return None


@dataclasses.dataclass(kw_only=True)
class Result:
    target: str
    dry_run: bool
    deleted: int = 0
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    by: dict[str, Counter[str]] = dataclasses.field(default_factory=lambda: defaultdict(Counter))
    oldest: Any = None
    samples: list[Any] = dataclasses.field(default_factory=list)
    scanned: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0
    lock_backoffs: int = 0
    stopped: str | None = None
    resume: dict[str, Any] = dataclasses.field(default_factory=dict)
    fraction: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "deleted": self.deleted,
            **dict(self.counts),
            "by": {group: dict(sorted(values.items())) for group, values in self.by.items()},
            "oldest": _jsonable(self.oldest),
            "samples": [_jsonable(s) for s in self.samples],
            "scanned": self.scanned,
            "batches": self.batches,
            "longest_batch_seconds": round(self.longest_batch_seconds, 4),
            "lock_backoffs": self.lock_backoffs,
            "stopped": self.stopped,
            "resume": dict(self.resume),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return str(value)


ProgressCallback = Callable[[Result], None]


def run(
    conn: psycopg.Connection,
    target: Target,
    limits: Limits,
    *,
    dry_run: bool,
    on_progress: ProgressCallback | None = None,
) -> Result:
    """Walk every segment of `target`, batch by batch. `conn` must be in autocommit mode."""
    result = Result(target=target.name, dry_run=dry_run)
    size = min(limits.batch_size, INITIAL_BATCH_SIZE)
    total = max(len(target.segments), 1)
    for index, segment in enumerate(target.segments):
        walk = _Walk(conn, target, segment, limits, result, dry_run)
        deleted = result.deleted
        size = walk.run(
            size, lambda frac, i=index: _report(result, (i + frac) / total, on_progress)
        )
        if result.stopped in ("aborted", "time budget spent"):
            break
        if segment.settle is not None and not dry_run and result.deleted > deleted:
            conn.execute(segment.settle(), segment.params(segment.start, 1))
    if not result.stopped:
        result.fraction = 1.0
    return result


def _report(result: Result, fraction: float, on_progress: ProgressCallback | None) -> None:
    result.fraction = max(0.0, min(fraction, 1.0))
    if on_progress is not None:
        on_progress(result)


@dataclasses.dataclass(frozen=True)
class _Batch:
    """What the walk needs from a batch: where it ended and how many rows it scanned."""

    last: tuple[Any, ...] | None
    scanned: int


class _Walk:
    def __init__(
        self,
        conn: psycopg.Connection,
        target: Target,
        segment: Segment,
        limits: Limits,
        result: Result,
        dry_run: bool,
    ) -> None:
        self.conn = conn
        self.target = target
        self.segment = segment
        self.limits = limits
        self.result = result
        self.dry_run = dry_run
        self.fused = segment.fused if not dry_run else None
        self.skip_locked = False
        self.query = self._query()

    def _query(self) -> sql.Composable:
        if self.fused is not None:
            return self.fused(self.skip_locked)
        return self.segment.select(not self.dry_run)

    def run(self, size: int, progress: Callable[[float], None]) -> int:
        key = self.segment.start
        backoffs = 0
        while True:
            reason = self.limits.stop_reason()
            if reason:
                self._stop(reason, key)
                return size
            started = time.monotonic()
            try:
                batch = self._batch(key, size)
            except (
                pg_errors.LockNotAvailable,
                pg_errors.DeadlockDetected,
                pg_errors.QueryCanceled,
            ) as exc:
                backoffs += 1
                self.result.lock_backoffs += 1
                logger.info(
                    "batch of %s backed off: %s",
                    self.target.name,
                    type(exc).__name__,
                    extra={"action": "batch_backoff", "target": self.target.name, "size": size},
                )
                if backoffs > MAX_BACKOFFS:
                    self._stop("lock contention", key)
                    return size
                if (
                    self.fused is not None
                    and not self.skip_locked
                    and isinstance(exc, pg_errors.LockNotAvailable | pg_errors.DeadlockDetected)
                ):
                    # A row is locked (or waiting for it closed a cycle with the holder, when
                    # deadlock_timeout is shorter than lock_timeout): from now on this walk skips
                    # locked rows instead.
                    self.skip_locked = True
                    self.query = self._query()
                    continue
                size = max(MIN_BATCH_SIZE, size // 2)
                time.sleep(random.uniform(0.01, 0.05) * backoffs)
                continue
            backoffs = 0
            elapsed = time.monotonic() - started
            self.result.batches += 1
            self.result.longest_batch_seconds = max(self.result.longest_batch_seconds, elapsed)
            self.result.scanned += batch.scanned
            if batch.last is None:
                progress(1.0)
                return size
            key = batch.last
            if self.segment.progress is not None:
                progress(self.segment.progress(key))
            if batch.scanned < size:
                progress(1.0)
                return size
            size = _adapt(size, elapsed, self.limits)

    def _settings(self) -> sql.Composable:
        """The statement that sets the batch's transaction parameters (SET LOCAL)."""
        settings = {
            "lock_timeout": f"{int(self.limits.lock_timeout.total_seconds() * 1000)}ms",
            "statement_timeout": f"{int(max(5.0, 10 * self.limits.max_batch_seconds) * 1000)}ms",
            **dict(self.segment.settings),
        }
        return sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(
                sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
                for name, value in settings.items()
            )
        )

    def _fused_batch(self, key: tuple[Any, ...], size: int) -> _Batch:
        """A real run's batch: one fused statement, in a pipeline (two round trips: up to the
        statement's rows, then the counter and the commit)."""
        params = self.segment.params(key, size)
        if "samples" in params:
            params["samples"] = max(SAMPLE_SIZE - len(self.result.samples), 0)
        counter = self.segment.counter
        durable = "synchronous_commit" in dict(self.segment.settings)
        conn = self.conn
        with conn.pipeline() as pipeline, conn.transaction():
            conn.execute(self._settings())
            before = conn.execute(counter[1]) if counter else None
            cursor = conn.execute(self.query, params)
            # A sync right after the statement (not a mere flush): the server accounts its time
            # as active (pg_stat_database.active_time) when it reports ready for the next query.
            pipeline.sync()
            rows = cursor.fetchall()
            after = conn.execute(counter[1]) if counter else None
            batch = self._tally_groups(rows)
            if batch.scanned < size and durable:
                # The walk's last batch waits for the WAL flush, and with it every batch before
                # it: the walk is durable when it returns, and the settle pass can mark index
                # entries dead (never done for a commit not yet flushed).
                conn.execute("SET LOCAL synchronous_commit TO DEFAULT")
        if counter and before is not None and after is not None:
            first, last = before.fetchone(), after.fetchone()
            if first is not None and last is not None:
                self.result.counts.update(
                    {n: b - a for n, a, b in zip(counter[0], first, last, strict=True)}
                )
        return batch

    def _batch(self, key: tuple[Any, ...], size: int) -> _Batch:
        if self.fused is not None:
            return self._fused_batch(key, size)
        with self.conn.transaction(), self.conn.cursor() as cur:
            if self.dry_run:
                cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(self._settings())
            params = self.segment.params(key, size)
            rows = cur.execute(self.query, params).fetchall()
            width = self.segment.key_width
            eligible = [row for row in rows if row[width] is not None]
            ids = [row[width] for row in eligible]
            counts: dict[str, int] = {}
            if ids:
                deleter = self.target.deleter
                counts = deleter.preview(cur, ids) if self.dry_run else deleter.delete(cur, ids)
        self._tally(eligible, ids, counts)
        last = tuple(rows[-1][:width]) if rows else None
        return _Batch(last=last, scanned=len(rows))

    def _tally(
        self,
        eligible: list[tuple[Any, ...]],
        ids: list[Any],
        counts: dict[str, int],
    ) -> None:
        result = self.result
        width = self.segment.key_width
        deleted = counts.pop("deleted", len(ids))
        result.deleted += deleted
        result.counts.update(counts)
        if eligible:
            present = self.segment.groups[: max(len(eligible[0]) - width - 1, 0)]
            for offset, name in enumerate(present, start=width + 1):
                result.by[name].update(map(str, map(operator.itemgetter(offset), eligible)))
            column = self.segment.oldest_column
            if column is not None:
                self._older(
                    min(
                        (v for v in map(operator.itemgetter(column), eligible) if v is not None),
                        default=None,
                    )
                )
        self._sample(ids)

    def _tally_groups(self, rows: list[tuple[Any, ...]]) -> _Batch:
        """A fused batch's rows (see Segment.fused) into the result."""
        if not rows:
            return _Batch(last=None, scanned=0)
        result = self.result
        width = self.segment.key_width
        groups = self.segment.groups
        for row in rows:
            values = row[width + 1 : width + 1 + len(groups)]
            deleted, oldest = row[width + 1 + len(groups) : -1]
            if not deleted:
                continue
            result.deleted += deleted
            for name, value in zip(groups, values, strict=True):
                result.by[name][str(value)] += deleted
            if self.segment.oldest_column is not None:
                self._older(oldest)
        self._sample(rows[0][-1] or [])
        return _Batch(last=tuple(rows[0][:width]), scanned=rows[0][width])

    def _older(self, first: Any) -> None:
        if first is not None and (self.result.oldest is None or first < self.result.oldest):
            self.result.oldest = first

    def _sample(self, ids: Sequence[Any]) -> None:
        room = SAMPLE_SIZE - len(self.result.samples)
        if room > 0:
            self.result.samples.extend(ids[:room])

    def _stop(self, reason: str, key: tuple[Any, ...]) -> None:
        self.result.stopped = reason
        self.result.resume = {"segment": self.segment.name, "after": [_jsonable(k) for k in key]}
        logger.info(
            "%s stopped: %s",
            self.target.name,
            reason,
            extra={"action": "walk_stopped", "target": self.target.name, "reason": reason},
        )


def _adapt(size: int, elapsed: float, limits: Limits) -> int:
    """Grow or shrink the batch towards TARGET_SHARE of max_batch_seconds, at most 2x a step."""
    goal = TARGET_SHARE * limits.max_batch_seconds
    ideal = size * goal / max(elapsed, 1e-4)
    bounded = min(max(ideal, size / 2), size * 2)
    return int(min(max(bounded, MIN_BATCH_SIZE), limits.batch_size))
