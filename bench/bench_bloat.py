"""Bloat after a prune: table and index sizes of procrastinate_jobs and procrastinate_events, and
a worker's fetch latency, before the prune, after it, and after [maintenance] (VACUUM (ANALYZE),
then REINDEX INDEX CONCURRENTLY of the indexes whose estimated bloat passes the threshold).

    python bench/bench_bloat.py --jobs 300000 --fetches 2000

The seed is bench/bench_jobs.py's (`--days 100`: 68.6% of the jobs finished more than 30 days
ago, the rest recent or todo). The prune is ours with maintenance off, then the maintenance
alone (retention.run.maintenance.after_run with vacuum and reindex on, reindex_bloat_ratio 0.3).
The fetch: `SELECT * FROM procrastinate_fetch_job_v2(queues, worker_id)` (Procrastinate 3.x's
fetch statement) in a transaction rolled back each time, so every fetch sees the same queue,
repeated `--fetches` times; p50 and p99 of the client-side time. Autovacuum is off on the
benchmark server, so what the prune leaves is what the next fetches meet until a vacuum.

The database is named `bench_bloat_seed` and dropped at the end (also after a failure).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_jobs

from retention.config import settings as settings_mod
from retention.pg import database
from retention.run import maintenance, runner

NAME = "bench_bloat_seed"
TABLES = ("procrastinate_jobs", "procrastinate_events")

SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid)
  FROM pg_class c WHERE c.relname = ANY(%(tables)s)
UNION ALL
SELECT ic.relname, NULL, pg_relation_size(ic.oid)
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
 WHERE t.relname = ANY(%(tables)s)
 ORDER BY 1
"""


def sizes(dsn: str) -> dict[str, tuple[int | None, int]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(SIZES, {"tables": list(TABLES)}).fetchall()
    return {name: (total, own) for name, total, own in rows}


def fetch_latency(dsn: str, fetches: int) -> dict[str, float]:
    queues = list(bench_jobs.QUEUES)
    with psycopg.connect(dsn, autocommit=True) as conn:
        worker = conn.execute("SELECT worker_id FROM procrastinate_register_worker_v1()").fetchone()
        assert worker is not None
        took = []
        for _ in range(fetches):
            started = time.perf_counter()
            with conn.transaction(force_rollback=True):
                conn.execute(
                    "SELECT * FROM procrastinate_fetch_job_v2(%s::varchar[], %s)",
                    (queues, worker[0]),
                ).fetchall()
            took.append(time.perf_counter() - started)
    took.sort()
    return {
        "p50_ms": statistics.median(took) * 1000,
        "p99_ms": took[min(len(took) - 1, int(len(took) * 0.99))] * 1000,
    }


def mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300_000, help="Jobs seeded.")
    parser.add_argument("--days", type=int, default=100, help="Days the jobs are spread over.")
    parser.add_argument("--fetches", type=int, default=2000, help="Fetches timed per state.")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    server = bench_jobs.Server(args.server)
    server.drop(NAME)
    try:
        made = bench_jobs.seed(server, NAME, args.jobs, args.days)
        dsn = server.dsn(NAME)
        print(f"seed: {made.jobs} jobs, {made.events} events, {made.old_jobs} eligible", flush=True)
        states: dict[str, tuple[dict[str, Any], dict[str, float], float]] = {}
        states["before"] = (sizes(dsn), fetch_latency(dsn, args.fetches), 0.0)
        location = database.Location(conninfo=dsn, source="DATABASE_URL")
        started = time.monotonic()
        summary = runner.execute(
            bench_jobs.ours_settings(dsn, None),
            location,
            stages=["jobs"],
            dry_run=False,
            trigger="cli",
        ).to_json()
        states["after prune"] = (
            sizes(dsn),
            fetch_latency(dsn, args.fetches),
            time.monotonic() - started,
        )
        deleted = summary["jobs"]["deleted"]
        settings = settings_mod.Settings(
            database_url=dsn, maintenance={"vacuum": True, "reindex": True}
        )
        started = time.monotonic()
        with database.connect(location) as conn:
            done = maintenance.after_run(conn, settings, deleted=deleted, dry_run=False)
        states["after maintenance"] = (
            sizes(dsn),
            fetch_latency(dsn, args.fetches),
            time.monotonic() - started,
        )
        assert done is not None
        print(
            f"pruned {deleted} jobs; maintenance: estimate {done.estimate}, "
            f"skipped {done.skipped}, {done.seconds:.1f} s"
        )
        for action in done.actions:
            print(f"  {action.statement}: {action.seconds} s, bloat {action.bloat}")
        names = list(states["before"][0])
        print("| relation | " + " | ".join(f"{s} MiB" for s in states) + " |")
        print("| --- |" + " --- |" * len(states))
        for name in names:
            cells = []
            for size, _, _ in states.values():
                total, own = size.get(name, (None, 0))
                cells.append(f"{mib(own)}" + (f" (total {mib(total)})" if total else ""))
            print(f"| {name} | " + " | ".join(cells) + " |")
        print(
            "| fetch p50 ms | "
            + " | ".join(f"{lat['p50_ms']:.3f}" for _, lat, _ in states.values())
            + " |"
        )
        print(
            "| fetch p99 ms | "
            + " | ".join(f"{lat['p99_ms']:.3f}" for _, lat, _ in states.values())
            + " |"
        )
        print("| seconds | " + " | ".join(f"{t:.1f}" for _, _, t in states.values()) + " |")
    finally:
        server.drop(NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
