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

Pacing (see Limits): before each batch but the run's first, a real walk pauses for
`pause_between_batches` (plus up to PAUSE_JITTER of it), counted from the end of the previous
batch; then, with `max_replication_lag`, it waits while a standby replays further behind than
that (see Replication), up to the time budget, after which the walk stops with
StopReason.REPLICA_LAG. A dry run neither pauses nor waits: it counts what a real run would do.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.rows import dict_row

from retention.config import durations
from retention.engine import results
from retention.pg import queries

logger = logging.getLogger(__name__)

INITIAL_BATCH_SIZE = 500
MIN_BATCH_SIZE = 10
TARGET_SHARE = 0.5
MAX_BACKOFFS = 8
SAMPLE_SIZE = 5
# A pause lasts pause_between_batches plus a random share of it, up to this one (0.25: +25%),
# so that several paced runs (one per database) do not fall into step.
PAUSE_JITTER = 0.25
# How often a walk waiting for replica lag reads pg_stat_replication again, and the longest
# sleep between two looks at the abort flag and the time budget.
LAG_POLL_SECONDS = 1.0
SLEEP_SLICE_SECONDS = 0.25


class Deleter(Protocol):
    """Deletes (or, in a dry run, counts) the rows of one batch, inside its transaction. Returns
    counts by name; `deleted`, when present, is how many rows went (else: one per id)."""

    def delete(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]: ...

    def preview(self, cur: psycopg.Cursor[Any], ids: list[Any]) -> dict[str, int]: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fused:
    """A real run's batch as one statement that selects and deletes (see Segment): `waiting`
    waits for a locked row up to `lock_timeout`; `skip_locked`, which the walk goes on with once
    a lock was not granted (or a deadlock was detected), skips such rows."""

    waiting: queries.Statement
    skip_locked: queries.Statement
    # Called with the statement's rows inside the batch's transaction, before its commit (the
    # archive's write); returns counts added to the result.
    before_commit: Callable[[psycopg.Connection, list[dict[str, Any]]], dict[str, int]] | None = (
        None
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Segment:
    """One keyset walk, its rows read by column name.

    `select` returns the batch's rows ordered by the key: the `key` columns, `id` (the id of an
    eligible row, NULL for a row scanned but kept), the `groups` columns, and the `oldest` column
    whose smallest non-NULL value is the summary's `oldest` (default: the first key column). A
    dry run executes `select` in a read-only transaction and the deleter's preview; a real run
    executes `locking_select` (default: `select`) and the deleter's delete.

    `fused`, when given, is what a real run executes instead: one statement that selects and
    deletes the batch, with the select's parameters, and tallies it in SQL. It returns rows of:
    the `key` columns (the last key scanned), `scanned` (how many rows were scanned), the
    `groups` columns, `deleted` (rows of that group deleted), `oldest` (the oldest of them), and
    `samples` (the first ids deleted in key order, the same on every row; a `samples` parameter,
    when the segment's parameters have one, is set to how many the result still lacks). With
    nothing deleted, one row with NULL groups; with nothing scanned, no row.

    `counter`, when given, is (names, statement): the statement returns one row of integers,
    read before and after each fused batch inside its transaction; the differences go to the
    result's counts under those names (rows deleted by a cascade, which no RETURNING sees).

    `settings` are run-time parameters set for each batch's transaction only (SET LOCAL).

    `settle`, when given, runs once (with the start key's parameters) after a real walk that
    deleted rows has reached its end: a pass over the walk's index range, so that the entries of
    the rows just deleted are marked dead now (PostgreSQL does so for an index scan that finds a
    row dead to every transaction) rather than visited one by one by the next run."""

    name: str
    select: queries.Statement
    params: Callable[[tuple[Any, ...], int], dict[str, Any]]
    start: tuple[Any, ...]
    key: tuple[str, ...]
    groups: tuple[str, ...] = ()
    oldest: str | None = None
    locking_select: queries.Statement | None = None
    progress: Callable[[tuple[Any, ...]], float] | None = None
    fused: Fused | None = None
    counter: tuple[tuple[str, ...], queries.Statement] | None = None
    settings: tuple[tuple[str, str], ...] = ()
    settle: queries.Statement | None = None

    @property
    def oldest_column(self) -> str:
        return self.oldest or self.key[0]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    name: str
    segments: Sequence[Segment]
    deleter: Deleter


@dataclasses.dataclass(frozen=True, kw_only=True)
class Standby:
    """One replaying WAL receiver as pg_stat_replication shows it (see pacing.sql)."""

    pid: int
    name: str
    visible: bool
    replay_lag_seconds: float | None
    replay_lsn: str | None
    behind_bytes: float | None


class Replication:
    """The standbys' replay lag, read from pg_stat_replication on the primary.

    A standby's lag is PostgreSQL's `replay_lag` while it has WAL left to replay; once it has
    replayed everything it was sent, its lag is 0 (PostgreSQL keeps showing the last measure for a
    while). When PostgreSQL has no measure (`replay_lag` NULL: it measures only between standby
    replies, and not at all when replay stalls right after an idle spell) but WAL is waiting to be
    replayed, the lag is how long this run has seen the standby's replay position stand still:
    a lower bound of the true lag, never a guess above it. A WAL sender whose details the role
    cannot read (it needs pg_read_all_stats, e.g. through pg_monitor) has an unknown lag: it is
    said once in `warnings`, never counted as 0."""

    def __init__(self, max_lag: dt.timedelta) -> None:
        self.max_lag = max_lag
        self.warnings: list[str] = []
        self._stalled: dict[int, tuple[str, float]] = {}

    def standbys(self, conn: psycopg.Connection) -> list[Standby]:
        with conn.cursor(row_factory=dict_row) as cur:
            return [Standby(**row) for row in cur.execute(queries.text("replication_lag"))]

    def lag(self, conn: psycopg.Connection) -> float | None:
        """The lag in seconds of the standby furthest behind, None when no standby's is known."""
        found = self.standbys(conn)
        hidden = [s for s in found if not s.visible]
        if hidden and not self.warnings:
            user = conn.info.user
            self.warnings.append(
                f"max_replication_lag: role {user!r} cannot see the replay lag of "
                f"{len(hidden)} standby(s) in pg_stat_replication, so it was not checked; "
                f"grant it pg_read_all_stats (GRANT pg_monitor TO {user} includes it)"
            )
            logger.warning(
                "%s",
                self.warnings[-1],
                extra={"action": "replica_lag_hidden", "standbys": len(hidden)},
            )
        now = time.monotonic()
        lags = [self._lag(standby, now) for standby in found if standby.visible]
        return max(lags, default=None)

    def _lag(self, standby: Standby, now: float) -> float:
        if not standby.behind_bytes:
            self._stalled.pop(standby.pid, None)
            return 0.0
        lsn = standby.replay_lsn or ""
        seen = self._stalled.get(standby.pid)
        if seen is None or seen[0] != lsn:
            seen = self._stalled[standby.pid] = (lsn, now)
        return max(standby.replay_lag_seconds or 0.0, now - seen[1])


@dataclasses.dataclass(kw_only=True)
class Limits:
    """A run's bounds, shared by its walks: batch size and duration, lock wait, time budget,
    abort, and pacing (`pause` between batches, `replication` lag; None: none). `last_batch_end`
    is when the run's previous batch ended (time.monotonic())."""

    batch_size: int
    max_batch_seconds: float
    lock_timeout: dt.timedelta
    deadline: float
    should_abort: Callable[[], bool] = lambda: False
    pause: dt.timedelta | None = None
    replication: Replication | None = None
    last_batch_end: float | None = None

    @property
    def paced(self) -> bool:
        return self.pause is not None or self.replication is not None

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self.replication.warnings) if self.replication is not None else ()

    def stop_reason(self) -> results.StopReason | None:
        if self.should_abort():
            return results.StopReason.ABORTED
        if time.monotonic() >= self.deadline:
            return results.StopReason.TIME_BUDGET
        return None

    @property
    def lock_timeout_ms(self) -> int:
        """The lock wait as PostgreSQL takes it: whole milliseconds, rounded up, never 0 (which
        means no timeout at all)."""
        return durations.to_milliseconds(self.lock_timeout)

    @property
    def statement_timeout_ms(self) -> int:
        """A batch statement's bound: ten times the batch target, at least 5 s."""
        seconds = max(5.0, 10 * self.max_batch_seconds)
        return durations.to_milliseconds(dt.timedelta(seconds=seconds))


@dataclasses.dataclass(kw_only=True)
class PaceCounts:
    """What a Pacer did, as it accumulates: a walk's Result is one, and a stage that is not a
    walk (the outbox drain, partition drops) keeps its own."""

    pauses: int = 0
    paused_seconds: float = 0.0
    lag_waits: int = 0
    lag_wait_seconds: float = 0.0
    max_lag_seconds: float | None = None
    waiting: str | None = None

    def pacing(self, paced: bool) -> results.Pacing | None:
        """The figures, frozen; None when the run is not `paced`."""
        if not paced:
            return None
        return results.Pacing(
            pauses=self.pauses,
            paused_seconds=self.paused_seconds,
            lag_waits=self.lag_waits,
            lag_wait_seconds=self.lag_wait_seconds,
            max_lag_seconds=self.max_lag_seconds,
        )


@dataclasses.dataclass(kw_only=True)
class Result(PaceCounts):
    """A walk's figures as they accumulate; `freeze()` gives the typed, immutable value."""

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
    stopped: results.StopReason | None = None
    resume: results.Resume | None = None
    fraction: float = 0.0
    paced: bool = False

    def freeze(self) -> results.Walk:
        return results.Walk(
            deleted=self.deleted,
            counts=dict(self.counts),
            by={group: dict(values) for group, values in self.by.items()},
            oldest=self.oldest,
            samples=tuple(self.samples),
            scanned=self.scanned,
            batches=self.batches,
            longest_batch_seconds=self.longest_batch_seconds,
            lock_backoffs=self.lock_backoffs,
            stopped=self.stopped,
            resume=self.resume,
            fraction=self.fraction,
            pacing=self.pacing(self.paced),
            waiting=self.waiting,
        )


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
    result = Result(target=target.name, dry_run=dry_run, paced=limits.paced)
    size = min(limits.batch_size, INITIAL_BATCH_SIZE)
    total = max(len(target.segments), 1)
    for index, segment in enumerate(target.segments):
        walk = _Walk(conn, target, segment, limits, result, dry_run)
        deleted = result.deleted
        size = walk.run(size, _fraction(result, index, total, on_progress))
        if result.stopped is not None and result.stopped.ends_run:
            break
        if segment.settle is not None and not dry_run and result.deleted > deleted:
            conn.execute(segment.settle, segment.params(segment.start, 1))
    if not result.stopped:
        result.fraction = 1.0
    return result


def _fraction(
    result: Result, index: int, total: int, on_progress: ProgressCallback | None
) -> Callable[[float], None]:
    """How far segment `index` of `total` is, as the whole target's fraction."""

    def report(fraction: float) -> None:
        result.fraction = max(0.0, min((index + fraction) / total, 1.0))
        if on_progress is not None:
            on_progress(result)

    return report


class Pacer:
    """The pacing of the module's docstring, for any stage that deletes in batches: call
    `before_batch()` before each batch (it returns why the stage stops, if it does) and
    `after_batch()` when one ends. `progress` is called while it waits for replica lag (the
    stage's partial result, whose `waiting` says so)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        limits: Limits,
        figures: PaceCounts,
        *,
        dry_run: bool,
        name: str,
        progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.conn = conn
        self.limits = limits
        self.result = figures
        self.dry_run = dry_run
        self.name = name
        self.progress = progress

    def after_batch(self) -> float:
        """Mark the end of a batch; returns that moment (time.monotonic())."""
        self.limits.last_batch_end = time.monotonic()
        return self.limits.last_batch_end

    def before_batch(self) -> results.StopReason | None:
        """Before a batch: the pause since the run's previous batch, then the wait for the
        replicas (see the module's docstring); why the walk stops meanwhile, if it does."""
        limits, result = self.limits, self.result
        if limits.pause is not None and limits.last_batch_end is not None:
            result.pauses += 1
            if not self.dry_run:
                share = 1 + random.uniform(0, PAUSE_JITTER)
                started = time.monotonic()
                reason = self._sleep_until(
                    limits.last_batch_end + limits.pause.total_seconds() * share
                )
                result.paused_seconds += time.monotonic() - started
                if reason:
                    return reason
        if limits.replication is not None:
            return self._wait_for_replicas(limits.replication)
        return None

    def _sleep_until(self, moment: float) -> results.StopReason | None:
        """Sleep until `moment` (time.monotonic()), in slices; the abort or the time budget, when
        one of them ends the sleep first."""
        while True:
            reason = self.limits.stop_reason()
            if reason:
                return reason
            left = moment - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(left, SLEEP_SLICE_SECONDS))

    def _wait_for_replicas(self, replication: Replication) -> results.StopReason | None:
        """Wait while a standby replays further behind than max_replication_lag, up to the time
        budget (then: StopReason.REPLICA_LAG); a dry run only counts the wait."""
        result = self.result
        since: float | None = None
        try:
            while True:
                lag = replication.lag(self.conn)
                if lag is not None:
                    result.max_lag_seconds = max(result.max_lag_seconds or 0.0, lag)
                if lag is None or lag <= replication.max_lag.total_seconds():
                    return None
                if since is None:
                    result.lag_waits += 1
                    if self.dry_run:
                        return None
                    since = time.monotonic()
                    result.waiting = results.WAITING_FOR_REPLICA_LAG
                    logger.info(
                        "%s waits for replica lag: %.1f s behind, more than %s",
                        self.name,
                        lag,
                        durations.format_duration(replication.max_lag),
                        extra={"action": "replica_lag_wait", "target": self.name},
                    )
                self.progress()
                reason = self._sleep_until(time.monotonic() + LAG_POLL_SECONDS)
                if reason is results.StopReason.TIME_BUDGET:
                    return results.StopReason.REPLICA_LAG
                if reason:
                    return reason
        finally:
            if since is not None:
                result.lag_wait_seconds += time.monotonic() - since
                result.waiting = None
                self.progress()


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
        self.progress: Callable[[float], None] = lambda fraction: None
        self.fraction = 0.0
        self.pacer = Pacer(
            conn,
            limits,
            result,
            dry_run=dry_run,
            name=target.name,
            progress=lambda: self.progress(self.fraction),
        )

    def _query(self) -> queries.Statement:
        if self.fused is not None:
            return self.fused.skip_locked if self.skip_locked else self.fused.waiting
        if self.dry_run:
            return self.segment.select
        return self.segment.locking_select or self.segment.select

    def run(self, size: int, progress: Callable[[float], None]) -> int:
        key = self.segment.start
        backoffs = 0
        self.progress = progress
        while True:
            reason = self.limits.stop_reason() or self.pacer.before_batch()
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
                    self._stop(results.StopReason.LOCK_CONTENTION, key)
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
            elapsed = self.pacer.after_batch() - started
            self.result.batches += 1
            self.result.longest_batch_seconds = max(self.result.longest_batch_seconds, elapsed)
            self.result.scanned += batch.scanned
            if batch.last is None:
                progress(1.0)
                return size
            key = batch.last
            if self.segment.progress is not None:
                self.fraction = self.segment.progress(key)
                progress(self.fraction)
            if batch.scanned < size:
                progress(1.0)
                return size
            size = _adapt(size, elapsed, self.limits)

    def _settings(self) -> queries.Statement:
        """The statement that sets the batch's transaction parameters (SET LOCAL). JIT is off:
        a batch is a short statement, and on a big table the planner's estimates can pass
        jit_above_cost, after which PostgreSQL compiles every batch's statement before running
        it (hundreds of milliseconds each)."""
        settings = {
            "lock_timeout": f"{self.limits.lock_timeout_ms}ms",
            "statement_timeout": f"{self.limits.statement_timeout_ms}ms",
            "jit": "off",
            **dict(self.segment.settings),
        }
        return sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(
                sql.SQL("set_config({}, {}, true)").format(sql.Literal(name), sql.Literal(value))
                for name, value in settings.items()
            )
        )

    def _key(self, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[name] for name in self.segment.key)

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
            cursor = conn.cursor(row_factory=dict_row)
            cursor.execute(self.query, params)
            # A sync right after the statement (not a mere flush): the server accounts its time
            # as active (pg_stat_database.active_time) when it reports ready for the next query.
            pipeline.sync()
            rows = cursor.fetchall()
            if self.fused is not None and self.fused.before_commit is not None:
                self.result.counts.update(self.fused.before_commit(conn, rows))
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
        with (
            self.conn.transaction(),
            self.conn.cursor(row_factory=dict_row) as select,
            self.conn.cursor() as cur,
        ):
            if self.dry_run:
                cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(self._settings())
            params = self.segment.params(key, size)
            rows = select.execute(self.query, params).fetchall()
            eligible = [row for row in rows if row["id"] is not None]
            ids = [row["id"] for row in eligible]
            counts: dict[str, int] = {}
            if ids:
                deleter = self.target.deleter
                counts = deleter.preview(cur, ids) if self.dry_run else deleter.delete(cur, ids)
        self._tally(eligible, ids, counts)
        return _Batch(last=self._key(rows[-1]) if rows else None, scanned=len(rows))

    def _tally(
        self,
        eligible: list[dict[str, Any]],
        ids: list[Any],
        counts: dict[str, int],
    ) -> None:
        result = self.result
        deleted = counts.pop("deleted", len(ids))
        result.deleted += deleted
        result.counts.update(counts)
        if eligible:
            for name in self.segment.groups:
                result.by[name].update(str(row[name]) for row in eligible)
        column = self.segment.oldest_column
        self._older(min((v for row in eligible if (v := row[column]) is not None), default=None))
        self._sample(ids)

    def _tally_groups(self, rows: list[dict[str, Any]]) -> _Batch:
        """A fused batch's rows (see Segment.fused) into the result."""
        if not rows:
            return _Batch(last=None, scanned=0)
        result = self.result
        for row in rows:
            deleted = row["deleted"]
            if not deleted:
                continue
            result.deleted += deleted
            for name in self.segment.groups:
                result.by[name][str(row[name])] += deleted
            self._older(row["oldest"])
        first = rows[0]
        self._sample(first["samples"] or [])
        return _Batch(last=self._key(first), scanned=first["scanned"])

    def _older(self, first: Any) -> None:
        if first is not None and (self.result.oldest is None or first < self.result.oldest):
            self.result.oldest = first

    def _sample(self, ids: Sequence[Any]) -> None:
        room = SAMPLE_SIZE - len(self.result.samples)
        if room > 0:
            self.result.samples.extend(ids[:room])

    def _stop(self, reason: results.StopReason, key: tuple[Any, ...]) -> None:
        self.result.stopped = reason
        self.result.resume = results.Resume(segment=self.segment.name, after=key)
        logger.info(
            "%s stopped: %s",
            self.target.name,
            reason.value,
            extra={"action": "walk_stopped", "target": self.target.name, "reason": reason.value},
        )


def _adapt(size: int, elapsed: float, limits: Limits) -> int:
    """Grow or shrink the batch towards TARGET_SHARE of max_batch_seconds, at most 2x a step."""
    goal = TARGET_SHARE * limits.max_batch_seconds
    ideal = size * goal / max(elapsed, 1e-4)
    bounded = min(max(ideal, size / 2), size * 2)
    return int(min(max(bounded, MIN_BATCH_SIZE), limits.batch_size))
