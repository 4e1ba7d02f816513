"""Job retention benchmark: Procrastinate's builtin `delete_old_jobs`, the floor (one DELETE of
exactly the same rows, triggers included) and `retention` (the engine, default batch settings) on
both jobs paths (`ours`: jobs_path = "auto", which on the benchmark's superuser is the set-based
path; `ours_normal`: jobs_path = "normal"), side by side on copies of one seeded database.

    python bench/bench_jobs.py --jobs 1000000 --rounds 3 --batch-sizes 2000,20000
    python bench/bench_jobs.py --jobs 1000000 --rounds 3 --one-statement --no-load
    python bench/bench_jobs.py --jobs 20000 --rounds 1        # smoke run, under a minute

The seed: `--jobs` jobs (~3 events each: deferred, started, final; cancelled jobs have no
`started`, aborted ones an `abort_requested`) whose final events are spread over `--days` days;
~2% of the jobs are still `todo` (deferred at any time in those days), 2% are periodic (they have
a `procrastinate_periodic_defers` row). Final jobs' ids follow their finish times and the todo
jobs come last: the jobs finished more than 30 days ago are exactly the ids <= N, so the floor is
`DELETE FROM procrastinate_jobs WHERE id <= N`; every contender must delete exactly N jobs and
leave the same rows. The seed database is built once (generate_series,
Procrastinate's triggers disabled during the load, then VACUUM ANALYZE) and every contender runs
on its own `CREATE DATABASE ... TEMPLATE` copy, after a CHECKPOINT. Contenders are interleaved
and run `--rounds` times; the best wall time of each is compared. The load writes each job's row
and its events in one transaction, as Procrastinate does when a job finishes; `--rewritten`
rewrites every job's row afterwards (as a stopping worker does to its jobs), so that ours takes its
slower path for every job (it probes each job's events for a later change of status).

Measured, per run: wall time; database time = the growth of `pg_stat_database.active_time` of
the contender's database (time its sessions spent executing statements, flushed when they end);
the longest transaction (the builtin and the floor are one statement; ours: the engine's
`longest_batch_seconds`); lock waits = every 50 ms, the ungranted locks (pg_locks) of sessions of
that database; one wait is a (pid, lock) pair seen in consecutive samples, its length is the time
between its first and last sample plus one interval (an upper bound); the WAL written meanwhile
(by the whole server). Then, on the same database, a second run with nothing left to delete, and
for ours a third one and one after a VACUUM (the state of the next scheduled run once autovacuum
has passed; autovacuum is off on the benchmark server).

`--batch-sizes` adds runs of ours with other `batch_size` settings; `--one-statement` adds a
bare prototype that selects, locks and deletes each batch in one statement (see `one_statement`):
ours does the same since the engine's fused batches, plus the guard against jobs changed since
the snapshot, the tallies, the time budget and adaptive sizing; the prototype shows their cost.

Under load, on fresh copies: a worker running jobs during the prune and a second worker, whose id
is on 10% of the finished jobs (all ages), stopped with SIGTERM during it: its shutdown deletes
its `procrastinate_workers` row, which sets `worker_id` to NULL on all those jobs (ON DELETE SET
NULL). Both are real `procrastinate` workers in subprocesses. Run for ours and for the builtin
(`--no-load` skips it).

Databases are named `bench_jobs_*` and dropped at the end (also after a failure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
from psycopg import conninfo as libpq
from psycopg import sql

import retention
from retention.config import policies
from retention.config import settings as settings_mod
from retention.pg import database, migrate
from retention.run import runner

PREFIX = "bench_jobs_"
KEEP_DAYS = 30
MARGIN = dt.timedelta(hours=6)
SAMPLE_SECONDS = 0.05
QUEUES = {
    "default": ("app.sync_account", "app.refresh_cache"),
    "emails": ("emails.send", "emails.bounce"),
    "reports": ("reports.build",),
    "webhooks": ("webhooks.deliver", "webhooks.retry"),
}
PERIODIC_TASK = "reports.nightly"
TASKS = [(queue, task) for queue, tasks in QUEUES.items() for task in tasks]
STATUS_BY_PERCENT = [("succeeded", 85), ("failed", 95), ("cancelled", 98), ("aborted", 100)]

SEED_PLAN = """
CREATE TEMP TABLE seed AS
SELECT g AS id,
       CASE WHEN g > %(final_jobs)s THEN 'todo'
            WHEN (g * 7919) %% 100 < 85 THEN 'succeeded'
            WHEN (g * 7919) %% 100 < 95 THEN 'failed'
            WHEN (g * 7919) %% 100 < 98 THEN 'cancelled'
            ELSE 'aborted' END::procrastinate_job_status AS status,
       (%(queues)s::text[])[1 + g %% %(ntasks)s] AS queue_name,
       CASE WHEN g %% 50 = 0 THEN %(periodic)s
            ELSE (%(tasks)s::text[])[1 + g %% %(ntasks)s] END AS task_name,
       CASE WHEN g <= %(old_jobs)s
            THEN %(start)s::timestamptz + (g - 1) * %(old_step)s::interval
            WHEN g <= %(final_jobs)s
            THEN %(recent_start)s::timestamptz + (g - %(old_jobs)s - 1) * %(recent_step)s::interval
            ELSE %(start)s::timestamptz + (g - %(final_jobs)s - 1) * %(todo_step)s::interval
       END AS at,
       make_interval(secs => 1 + (g * 31) %% 600) AS waited,
       make_interval(secs => 0.05 + ((g * 17) %% 300) / 10.0) AS ran
  FROM generate_series(1::bigint, %(jobs)s) g
"""

SEED_JOBS = """
INSERT INTO procrastinate_jobs (id, queue_name, task_name, args, status, attempts)
SELECT id, queue_name, task_name,
       jsonb_build_object('account_id', id %% 9973, 'request', md5(id::text)),
       status, CASE WHEN status IN ('todo', 'cancelled') THEN 0 ELSE 1 END
  FROM seed ORDER BY id
"""

SEED_EVENTS = """
INSERT INTO procrastinate_events (job_id, type, at)
SELECT s.id, e.type::procrastinate_job_event_type, e.at
  FROM seed s
 CROSS JOIN LATERAL (VALUES
     (1, 'deferred', CASE WHEN s.status = 'todo' THEN s.at ELSE s.at - s.ran - s.waited END),
     (2, 'started', s.at - s.ran),
     (3, 'abort_requested', s.at - s.ran / 2),
     (4, s.status::text, s.at)
 ) AS e(ord, type, at)
 WHERE e.ord = 1
    OR (e.ord = 2 AND s.status IN ('succeeded', 'failed', 'aborted'))
    OR (e.ord = 3 AND s.status = 'aborted')
    OR (e.ord = 4 AND s.status <> 'todo')
"""

SEED_PERIODIC = """
INSERT INTO procrastinate_periodic_defers (task_name, defer_timestamp, job_id)
SELECT task_name, floor(extract(epoch FROM at - ran - waited))::bigint, id
  FROM seed WHERE task_name = %(periodic)s
ON CONFLICT DO NOTHING
"""

SEED_SEQUENCES = """
SELECT setval(pg_get_serial_sequence('procrastinate_jobs', 'id'), max(id)) FROM procrastinate_jobs;
SELECT setval(pg_get_serial_sequence('procrastinate_events', 'id'), max(id))
  FROM procrastinate_events;
"""

COUNTS = """
SELECT (SELECT count(*) FROM procrastinate_jobs),
       (SELECT count(*) FROM procrastinate_events),
       (SELECT coalesce(sum(id), 0) FROM procrastinate_jobs),
       (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')),
       (SELECT count(*) FROM procrastinate_periodic_defers WHERE job_id IS NOT NULL)
"""

LOCK_WAITS = """
SELECT a.pid, a.application_name, left(a.query, 120),
       l.locktype, l.database, l.relation, l.page, l.tuple, l.transactionid::text,
       l.virtualxid, l.mode, pg_blocking_pids(a.pid)
  FROM pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE NOT l.granted AND a.datname = %(db)s
"""

ACTIVE_TIME = "SELECT active_time, sessions FROM pg_stat_database WHERE datname = %(db)s"
DB_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = %(db)s AND pid <> pg_backend_pid()"
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Seed:
    jobs: int
    old_jobs: int
    final_jobs: int
    events: int
    seconds: float


@dataclasses.dataclass(kw_only=True)
class Wait:
    first: float
    last: float
    application: str
    query: str
    lock: str
    blockers: list[int]

    @property
    def seconds(self) -> float:
        return self.last - self.first + SAMPLE_SECONDS


@dataclasses.dataclass(kw_only=True)
class Measure:
    contender: str
    label: str
    wall: float
    db_seconds: float
    longest_transaction: float
    deleted_jobs: int
    longest_wait: Wait | None
    waits: int
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def row(self) -> str:
        wait = self.longest_wait
        shown = f"{wait.seconds:.2f} s ({wait.application or '?'})" if wait else "none seen"
        return (
            f"| {self.contender} | {self.label} | {self.wall:.2f} | {self.db_seconds:.3f} | "
            f"{self.longest_transaction:.3f} | {self.deleted_jobs} | {shown} |"
        )


class Server:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def dsn(self, name: str, **extra: str) -> str:
        params = libpq.conninfo_to_dict(self.conninfo)
        params["dbname"] = name
        params.update(extra)
        return libpq.make_conninfo(**params)

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, autocommit=True)

    def create(self, name: str, template: str | None = None) -> str:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            if template is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            else:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
        return self.dsn(name)

    def drop(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def drop_all(self) -> None:
        with self.admin() as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",)
                )
            ]
        for name in names:
            self.drop(name)

    def checkpoint(self) -> None:
        with self.admin() as conn:
            conn.execute("CHECKPOINT")

    def wal_position(self) -> str:
        with self.admin() as conn:
            return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]  # type: ignore[index]

    def wal_bytes_since(self, position: str) -> int:
        """WAL written by the whole server since `position` (other databases' writes included)."""
        with self.admin() as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (position,)
            ).fetchone()
        return int(row[0]) if row else 0

    def active_seconds(self, name: str) -> float:
        """pg_stat_database.active_time of `name`, once its sessions have ended and flushed."""
        with self.admin() as conn:
            deadline = time.monotonic() + 30
            while conn.execute(DB_SESSIONS, {"db": name}).fetchone()[0]:  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sessions of {name} did not end")
                time.sleep(0.05)
            time.sleep(0.2)
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(ACTIVE_TIME, {"db": name}).fetchone()
        return (row[0] or 0.0) / 1000 if row else 0.0


def seed(server: Server, name: str, jobs: int, days: int, rewritten: bool = False) -> Seed:
    started = time.monotonic()
    dsn = server.create(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate.apply(conn)
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        todo = max(1, jobs // 50)
        final_jobs = jobs - todo
        old_share = (days - KEEP_DAYS) / days
        old_jobs = int(final_jobs * old_share)
        start = now - dt.timedelta(days=days)
        old_span = dt.timedelta(days=days - KEEP_DAYS) - MARGIN
        recent_start = now - dt.timedelta(days=KEEP_DAYS) + MARGIN
        recent_span = dt.timedelta(days=KEEP_DAYS) - MARGIN - dt.timedelta(minutes=30)
        params = {
            "jobs": jobs,
            "final_jobs": final_jobs,
            "old_jobs": old_jobs,
            "start": start,
            "recent_start": recent_start,
            "old_step": old_span / max(old_jobs, 1),
            "recent_step": recent_span / max(final_jobs - old_jobs, 1),
            "todo_step": dt.timedelta(days=days) / todo,
            "queues": [queue for queue, _ in TASKS],
            "tasks": [task for _, task in TASKS],
            "ntasks": len(TASKS),
            "periodic": PERIODIC_TASK,
        }
        conn.execute("SET temp_buffers = '512MB'")
        with conn.transaction():
            conn.execute("SET LOCAL work_mem = '256MB'")
            for table in ("procrastinate_jobs", "procrastinate_events"):
                conn.execute(
                    sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier(table))
                )
            conn.execute(SEED_PLAN, params)
            conn.execute(SEED_JOBS, {})
            conn.execute(SEED_EVENTS)
            conn.execute(SEED_PERIODIC, params)
            conn.execute(SEED_SEQUENCES)
            for table in ("procrastinate_jobs", "procrastinate_events"):
                conn.execute(
                    sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier(table))
                )
            conn.execute("DROP TABLE seed")
        if rewritten:
            # Every job's row version rewritten after its final event (as the ON DELETE SET NULL
            # of its worker's row does when the worker stops): ours must probe every job's events.
            conn.execute("UPDATE procrastinate_jobs SET priority = priority")
        conn.execute(
            "VACUUM ANALYZE procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers"
        )
        events = conn.execute("SELECT count(*) FROM procrastinate_events").fetchone()[0]  # type: ignore[index]
    return Seed(
        jobs=jobs,
        old_jobs=old_jobs,
        final_jobs=final_jobs,
        events=events,
        seconds=time.monotonic() - started,
    )


class LockSampler:
    """Every SAMPLE_SECONDS, the ungranted locks of the sessions of one database."""

    def __init__(self, server: Server, database: str) -> None:
        self.server = server
        self.database = database
        self.open: dict[tuple[Any, ...], Wait] = {}
        self.done: list[Wait] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> LockSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.done.extend(self.open.values())
        self.open.clear()

    def _loop(self) -> None:
        with self.server.admin() as conn:
            while not self._stop.is_set():
                now = time.monotonic()
                seen = set()
                for row in conn.execute(LOCK_WAITS, {"db": self.database}).fetchall():
                    pid, app, query, *lock, blockers = row
                    key = (pid, *lock)
                    seen.add(key)
                    if key in self.open:
                        self.open[key].last = now
                    else:
                        self.open[key] = Wait(
                            first=now,
                            last=now,
                            application=app,
                            query=" ".join(query.split()),
                            lock=f"{lock[0]} {lock[-1]}",
                            blockers=list(blockers),
                        )
                for key in [k for k in self.open if k not in seen]:
                    self.done.append(self.open.pop(key))
                self._stop.wait(max(0.0, SAMPLE_SECONDS - (time.monotonic() - now)))

    def longest(self) -> Wait | None:
        return max(self.done, key=lambda w: w.seconds, default=None)


def counts(dsn: str) -> tuple[int, ...]:
    with psycopg.connect(dsn) as conn:
        return tuple(conn.execute(COUNTS).fetchone())  # type: ignore[arg-type]


def builtin(dsn: str) -> dict[str, Any]:
    async def go() -> None:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        async with app.open_async():
            started = time.monotonic()
            await app.job_manager.delete_old_jobs(
                nb_hours=KEEP_DAYS * 24,
                include_failed=True,
                include_cancelled=True,
                include_aborted=True,
            )
            out["transaction"] = time.monotonic() - started

    out: dict[str, Any] = {}
    asyncio.run(go())
    return out


def floor(dsn: str, old_jobs: int) -> dict[str, Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute("DELETE FROM procrastinate_jobs WHERE id <= %s", (old_jobs,))
        return {"transaction": time.monotonic() - started}


def ours_settings(
    dsn: str, batch_size: int | None, jobs_path: str = "auto"
) -> settings_mod.Settings:
    age = f"{KEEP_DAYS}d"
    knobs: dict[str, Any] = {"jobs_path": jobs_path}
    if batch_size is not None:
        knobs["batch_size"] = batch_size
    return settings_mod.Settings(
        database_url=dsn,
        jobs={"succeeded": age, "failed": age, "cancelled": age, "aborted": age},
        **knobs,
    )


ONE_STATEMENT_BATCH = """
WITH scanned AS (
    SELECT e.id AS event_id, e.at, e.job_id
      FROM procrastinate_events e
     WHERE e.type = %(event_type)s::procrastinate_job_event_type
       AND e.at < %(cutoff)s
       AND (e.at, e.id) > (%(after_at)s, %(after_id)s)
     ORDER BY e.at, e.id
     LIMIT %(limit)s
), eligible AS (
    SELECT j.id
      FROM scanned s
      JOIN procrastinate_jobs j ON j.id = s.job_id
     WHERE j.status::text = %(status)s::text
       AND NOT EXISTS (
           SELECT 1 FROM procrastinate_events later
            WHERE later.job_id = s.job_id
              AND later.type NOT IN ('scheduled', 'abort_requested')
              AND (later.at, later.id) > (s.at, s.event_id))
       FOR UPDATE OF j SKIP LOCKED
), gone AS (
    DELETE FROM procrastinate_jobs j USING eligible el WHERE j.id = el.id RETURNING j.id
), last AS (
    SELECT at, event_id FROM scanned ORDER BY at DESC, event_id DESC LIMIT 1
)
SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM scanned),
       (SELECT at FROM last), (SELECT event_id FROM last)
"""


def one_statement(dsn: str) -> dict[str, Any]:
    """A prototype, not the engine: each batch selects, locks and deletes in one statement (the
    events go through Procrastinate's ON DELETE CASCADE), nothing travels to the client but the
    keyset position. It lacks what the engine adds: the re-check of jobs changed since the cutoff,
    per-status/queue/task tallies, the dry run, the time budget and adaptive batch size."""
    limit = settings_mod.DEFAULT_BATCH_SIZE
    longest = 0.0
    with psycopg.connect(dsn, autocommit=True) as conn:
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        cutoff = now - dt.timedelta(days=KEEP_DAYS)
        for status in policies.FINAL_STATUSES:
            after: tuple[Any, ...] = (dt.datetime(1, 1, 1, tzinfo=dt.UTC), 0)
            while True:
                started = time.monotonic()
                with conn.transaction():
                    row = conn.execute(
                        ONE_STATEMENT_BATCH,
                        {
                            "event_type": status,
                            "status": status,
                            "cutoff": cutoff,
                            "after_at": after[0],
                            "after_id": after[1],
                            "limit": limit,
                        },
                    ).fetchone()
                longest = max(longest, time.monotonic() - started)
                assert row is not None
                if row[1] < limit:
                    break
                after = (row[2], row[3])
    return {"transaction": longest}


def ours(dsn: str, batch_size: int | None = None, jobs_path: str = "auto") -> dict[str, Any]:
    """The engine: on the benchmark server's superuser, "auto" takes the set-based path (see
    retention.jobs.paths); "normal" the normal one."""
    location = database.Location(conninfo=dsn, source="DATABASE_URL")
    summary = runner.execute(
        ours_settings(dsn, batch_size, jobs_path),
        location,
        stages=["jobs"],
        dry_run=False,
        trigger="cli",
    ).to_json()
    jobs = summary["jobs"]
    return {
        "path": jobs.get("path"),
        "transaction": jobs["longest_batch_seconds"],
        "batches": jobs["batches"],
        "lock_backoffs": jobs["lock_backoffs"],
        "stopped": jobs["stopped"],
        "events": jobs.get("events", 0),
    }


def measure(
    server: Server,
    name: str,
    contender: str,
    label: str,
    call: Callable[[str], dict[str, Any]],
    *,
    quiet: bool = True,
) -> Measure:
    """One run of `call` on database `name`. Database time only when `quiet` (no other sessions)."""
    dsn = server.dsn(name)
    before_counts = counts(dsn)
    before = server.active_seconds(name) if quiet else 0.0
    server.checkpoint()
    wal_before = server.wal_position()
    with LockSampler(server, name) as sampler:
        started = time.monotonic()
        extra = call(dsn)
        wall = time.monotonic() - started
    wal = server.wal_bytes_since(wal_before)
    after = server.active_seconds(name) if quiet else float("nan")
    after_counts = counts(dsn)
    measured = Measure(
        contender=contender,
        label=label,
        wall=wall,
        db_seconds=after - before,
        longest_transaction=extra.pop("transaction"),
        deleted_jobs=before_counts[0] - after_counts[0],
        longest_wait=sampler.longest(),
        waits=len(sampler.done),
        extra={**extra, "wal_mb": round(wal / 2**20, 1), "counts_after": after_counts},
    )
    print(
        f"  {contender:8} {label:28} wall {wall:7.2f} s  db {measured.db_seconds:7.3f} s  "
        f"longest tx {measured.longest_transaction:6.3f} s  deleted {measured.deleted_jobs:8}  "
        f"waits {measured.waits} longest "
        f"{measured.longest_wait.seconds if measured.longest_wait else 0:.2f} s  {measured.extra}",
        flush=True,
    )
    return measured


def worker_main(dsn: str, name: str) -> None:
    """A real Procrastinate worker running the benchmark's tasks (a subprocess of the bench)."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    for task_name in {task for _, task in TASKS} | {PERIODIC_TASK}:

        def work(**kwargs: Any) -> None:
            time.sleep(0.01)

        app.task(name=task_name, pass_context=False)(work)
    app.run_worker(name=name, concurrency=4, wait=True, install_signal_handlers=True)


@contextlib.contextmanager
def worker(server: Server, name: str, label: str) -> Iterator[subprocess.Popen[bytes]]:
    dsn = server.dsn(name, application_name=f"worker-{label}")
    process = subprocess.Popen(
        [sys.executable, __file__, "worker", "--dsn", dsn, "--name", label],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_worker(dsn: str, known: set[int], timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            ids = {row[0] for row in conn.execute("SELECT id FROM procrastinate_workers")}
            if ids - known:
                return max(ids - known)
            time.sleep(0.1)
    raise RuntimeError("the worker did not register")


def under_load(
    server: Server,
    template: str,
    contender: str,
    call: Callable[[str], dict[str, Any]],
    *,
    delay: float,
    old_jobs: int,
) -> Measure:
    """The prune with worker A running jobs, and worker B stopped (SIGTERM) `delay` s into it."""
    name = f"{PREFIX}load_{contender}"
    dsn = server.create(name, template)
    try:
        with worker(server, name, "b") as process_b:
            worker_b = wait_for_worker(dsn, set())
            with psycopg.connect(dsn, autocommit=True) as conn:
                stamped = conn.execute(
                    "UPDATE procrastinate_jobs SET worker_id = %s "
                    "WHERE id %% 10 = 3 AND status NOT IN ('todo', 'doing')",
                    (worker_b,),
                ).rowcount
                conn.execute("VACUUM ANALYZE procrastinate_jobs")
            with worker(server, name, "a"):
                wait_for_worker(dsn, {worker_b})
                time.sleep(1.0)
                stop: dict[str, float] = {}

                def stop_b() -> None:
                    stop["sent"] = time.monotonic()
                    process_b.send_signal(signal.SIGTERM)
                    process_b.wait(120)
                    stop["exited"] = time.monotonic()

                timer = threading.Timer(delay, stop_b)

                def run(target: str) -> dict[str, Any]:
                    timer.start()
                    started = time.monotonic()
                    out = call(target)
                    out["prune_seconds"] = round(time.monotonic() - started, 2)
                    timer.join()
                    return out

                measured = measure(server, name, contender, "with workers", run, quiet=False)
                with psycopg.connect(dsn, autocommit=True) as conn:
                    left = conn.execute(
                        "SELECT count(*) FROM procrastinate_jobs WHERE id <= %s "
                        "AND status NOT IN ('todo', 'doing')",
                        (old_jobs,),
                    ).fetchone()[0]  # type: ignore[index]
                    stamped_left = conn.execute(
                        "SELECT count(*) FROM procrastinate_jobs WHERE worker_id = %s", (worker_b,)
                    ).fetchone()[0]  # type: ignore[index]
                    ran = conn.execute(
                        "SELECT count(*) FROM procrastinate_events "
                        "WHERE type = 'started' AND at > now() - interval '1 hour'"
                    ).fetchone()[0]  # type: ignore[index]
                measured.extra.update(
                    {
                        "worker_b_jobs": stamped,
                        "worker_b_stop_seconds_after_prune_start": round(delay, 2),
                        "worker_b_shutdown_seconds": round(stop["exited"] - stop["sent"], 2),
                        "worker_b_jobs_still_stamped": stamped_left,
                        "eligible_jobs_left": left,
                        "jobs_started_by_workers_last_hour": ran,
                    }
                )
                print(f"    {measured.extra}", flush=True)
        return measured
    finally:
        server.drop(name)


def source_version() -> str:
    root = Path(retention.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "retention"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("BENCH_COMMIT", "not a git checkout")
    return f"commit {commit}" + (" with uncommitted changes in retention/" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="Jobs seeded.")
    parser.add_argument("--days", type=int, default=100, help="Days the jobs are spread over.")
    parser.add_argument("--rounds", type=int, default=2, help="Runs of each contender.")
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Maintenance database of the PostgreSQL server used.",
    )
    parser.add_argument("--no-load", action="store_true", help="Skip the runs with workers.")
    parser.add_argument(
        "--rewritten",
        action="store_true",
        help="Rewrite every job's row after the seed (as a stopping worker does to its jobs), so "
        "that no job's row version shares its final event's transaction.",
    )
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    parser.add_argument(
        "--only",
        type=lambda text: [part for part in text.split(",") if part],
        default=[],
        help="Run only these contenders (comma-separated; builtin and floor always run).",
    )
    parser.add_argument(
        "--batch-sizes",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[],
        help="Also run ours with these batch_size settings (comma-separated), e.g. 2000,20000.",
    )
    parser.add_argument(
        "--one-statement",
        action="store_true",
        help="Also run a prototype that selects and deletes each batch in one statement.",
    )
    args = parser.parse_args(argv)
    server = Server(args.server)
    template = f"{PREFIX}seed"
    server.drop_all()
    print(f"retention from {Path(retention.__file__).parent}, {source_version()}", flush=True)
    results: list[Measure] = []
    try:
        made = seed(server, template, args.jobs, args.days, args.rewritten)
        print(
            f"seed: {made.jobs} jobs, {made.events} events, {made.old_jobs} eligible "
            f"(ids <= {made.old_jobs}), {made.jobs - made.final_jobs} todo, "
            f"{made.seconds:.1f} s (incl. migrations and VACUUM ANALYZE)",
            flush=True,
        )
        calls: dict[str, Callable[[str], dict[str, Any]]] = {
            "builtin": builtin,
            "floor": lambda dsn: floor(dsn, made.old_jobs),
            "ours": ours,
            "ours_normal": functools.partial(ours, jobs_path="normal"),
        }
        for size in args.batch_sizes:
            calls[f"ours_bs{size}"] = functools.partial(ours, batch_size=size)
        if args.one_statement:
            calls["one_statement"] = one_statement
        if args.only:
            keep = {"builtin", "floor", *args.only}
            calls = {name: call for name, call in calls.items() if name in keep}
        remaining: dict[str, tuple[int, ...]] = {}
        for round_ in range(1, args.rounds + 1):
            for contender, call in calls.items():
                name = f"{PREFIX}{contender}_{round_}"
                dsn = server.create(name, template)
                try:
                    first = measure(server, name, contender, f"prune, round {round_}", call)
                    results.append(first)
                    remaining.setdefault(contender, first.extra["counts_after"])
                    if first.deleted_jobs != made.old_jobs:
                        raise RuntimeError(
                            f"{contender} deleted {first.deleted_jobs} jobs, expected {made.old_jobs}"
                        )
                    results.append(
                        measure(server, name, contender, f"nothing left, round {round_}", call)
                    )
                    if contender.startswith("ours"):
                        results.append(
                            measure(
                                server, name, contender, f"nothing left again, round {round_}", call
                            )
                        )
                        with psycopg.connect(dsn, autocommit=True) as conn:
                            conn.execute("VACUUM procrastinate_jobs, procrastinate_events")
                        results.append(
                            measure(
                                server,
                                name,
                                contender,
                                f"nothing left, vacuumed, round {round_}",
                                call,
                            )
                        )
                finally:
                    server.drop(name)
        if len(set(remaining.values())) != 1:
            raise RuntimeError(f"contenders left different rows: {remaining}")
        if not args.no_load:
            best_ours = min(m.wall for m in results if m.contender == "ours" and "prune" in m.label)
            delay = max(0.5, best_ours * 0.3)
            for contender in ("ours", "builtin"):
                results.append(
                    under_load(
                        server,
                        template,
                        contender,
                        calls[contender],
                        delay=delay,
                        old_jobs=made.old_jobs,
                    )
                )
    finally:
        server.drop_all()
    report(results, made, args)
    return 0


def report(results: list[Measure], made: Seed, args: argparse.Namespace) -> None:
    def pick(contender: str, label: str) -> list[Measure]:
        return [m for m in results if m.contender == contender and m.label.startswith(label)]

    def best(contender: str, label: str) -> Measure:
        return min(pick(contender, label), key=lambda m: m.wall)

    print()
    print(
        "| contender | run | wall s | database s | longest transaction s | jobs deleted | "
        "longest lock wait |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for m in results:
        print(m.row())
    contenders = list(dict.fromkeys(m.contender for m in results if m.label.startswith("prune")))
    floor_best = best("floor", "prune").wall
    floor_walls = [m.wall for m in pick("floor", "prune")]
    builtin_best = best("builtin", "prune").wall
    print()
    for c in contenders:
        walls = [m.wall for m in pick(c, "prune")]
        line = (
            f"{c}: prune walls {', '.join(f'{v:.2f}' for v in walls)} s, "
            f"median {statistics.median(walls):.2f} s, best {min(walls):.2f} s"
        )
        if c not in ("builtin", "floor"):
            longest = max(m.longest_transaction for m in pick(c, "prune"))
            line += (
                f"; / floor {min(walls) / floor_best:.2f}x "
                f"(median {statistics.median(walls) / statistics.median(floor_walls):.2f}x), "
                f"/ builtin {min(walls) / builtin_best:.2f}x (target <= 1x), "
                f"longest transaction {longest:.3f} s (target <= 1 s)"
            )
        print(line)
    for c in ("builtin", "floor", "ours", "ours_normal"):
        line = ", ".join(
            f"{shown} {best(c, label).db_seconds * 1000:.1f} ms"
            for label, shown in (
                ("nothing left, round", "right after the prune"),
                ("nothing left again", "once more"),
                ("nothing left, vacuumed", "after VACUUM"),
            )
            if pick(c, label)
        )
        print(f"{c}, database time of a run with nothing left (best): {line}")
    for m in results:
        if m.label == "with workers":
            wait = m.longest_wait
            shown = (
                f"{wait.seconds:.2f} s by {wait.application or '?'} on {wait.lock} "
                f"(blocked by {wait.blockers}): {wait.query}"
                if wait
                else "none seen"
            )
            print(f"{m.contender} with workers: {m.waits} lock waits, longest {shown}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "seed": dataclasses.asdict(made),
                    "results": [
                        {
                            **dataclasses.asdict(m),
                            "longest_wait_seconds": m.longest_wait.seconds
                            if m.longest_wait
                            else None,
                        }
                        for m in results
                    ],
                },
                default=str,
                indent=2,
            )
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_args = argparse.ArgumentParser()
        worker_args.add_argument("worker")
        worker_args.add_argument("--dsn", required=True)
        worker_args.add_argument("--name", required=True)
        parsed = worker_args.parse_args()
        worker_main(parsed.dsn, parsed.name)
        sys.exit(0)
    os.environ.pop("RETENTION_CONFIG", None)
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    sys.exit(main())
