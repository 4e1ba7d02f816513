"""Legal hold cost: the jobs prune with `--holds` holds in place against the same prune without
any, side by side on copies of one seeded database (bench_jobs.py's seed and measurement).

    python bench/bench_holds.py --jobs 1000000 --rounds 3
    python bench/bench_holds.py --jobs 20000 --rounds 1        # smoke run, under a minute

The holds, placed on the copy before the run (through `retention.holds.add`, as a user does):
all but 20 name 5 job ids each, taken among the jobs the prune keeps (younger than 30 days), so
that both contenders delete exactly the same jobs and every deleted job is checked against every
hold; 10 name a queue glob and 10 a task glob that match no seeded job (each job's queue and task
are matched against them all). Every batch's statement reads the holds itself: the ids as one
hashed set, the globs as one alternation each (tried only on names LIKE one of the globs). The
rounds are interleaved (each round runs both, in alternating order); the best and the median wall
time of each contender are compared, with the load average before and after. After each run with
holds, the count of held jobs the run's summary reports (prune.held, run by the prune after its
walk) is timed again on the pruned copy: the part of the difference that is not in the batches.
Databases are named `bench_jobs_*` and dropped at the end (also after a failure).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_jobs

from retention import holds
from retention.config import settings as settings_mod
from retention.jobs import prune

PATTERN_HOLDS = 20
IDS_PER_HOLD = 5


def place(dsn: str, count: int, old_jobs: int) -> int:
    """`count` holds on jobs the prune keeps, and globs matching none: how many were placed."""
    settings = settings_mod.Settings(database_url=dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        young = [
            row[0]
            for row in conn.execute(
                "SELECT id FROM procrastinate_jobs WHERE id > %s ORDER BY id LIMIT %s",
                (old_jobs, (count - PATTERN_HOLDS) * IDS_PER_HOLD),
            )
        ]
        placed = 0
        for start in range(0, len(young), IDS_PER_HOLD):
            chunk = young[start : start + IDS_PER_HOLD]
            holds.add(conn, settings, job_ids=chunk, reason=f"bench {start}", by="bench")
            placed += 1
        for n in range(PATTERN_HOLDS // 2):
            holds.add(conn, settings, queue=f"legal-case-{n}-*", reason="bench", by="bench")
            holds.add(conn, settings, task=f"archive.case_{n}.*", reason="bench", by="bench")
            placed += 2
    return placed


def time_held_count(dsn: str) -> float:
    """Seconds the prune's count of held jobs takes now (after the run, on its copy)."""
    settings = bench_jobs.ours_settings(dsn, None)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT now()").fetchone()
        assert row is not None
        started = time.monotonic()
        prune.held(conn, settings.jobs, row[0])
        return time.monotonic() - started


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="Jobs seeded.")
    parser.add_argument("--days", type=int, default=100, help="Days the jobs are spread over.")
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each contender.")
    parser.add_argument("--holds", type=int, default=1000, help="Holds in place.")
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Maintenance database of the PostgreSQL server used.",
    )
    args = parser.parse_args(argv)
    server = bench_jobs.Server(args.server)
    template = f"{bench_jobs.PREFIX}holds_seed"
    results: dict[str, list[bench_jobs.Measure]] = {"no holds": [], f"{args.holds} holds": []}
    counted: list[float] = []
    loads = [load()]
    try:
        made = bench_jobs.seed(server, template, args.jobs, args.days)
        print(f"seed: {made.jobs} jobs, {made.old_jobs} eligible; load {loads[0]}", flush=True)
        labels = list(results)
        for round_ in range(1, args.rounds + 1):
            for label in labels if round_ % 2 else labels[::-1]:
                name = f"{bench_jobs.PREFIX}holds_{round_}_{len(results[label])}_{label[:2]}"
                dsn = server.create(name, template)
                extra: dict[str, Any] = {}
                if label != "no holds":
                    extra["holds"] = place(dsn, args.holds, made.old_jobs)
                measured = bench_jobs.measure(server, name, "ours", label, bench_jobs.ours)
                assert measured.deleted_jobs == made.old_jobs, measured.deleted_jobs
                if label != "no holds":
                    counted.append(time_held_count(dsn))
                    print(f"    held count after the run: {counted[-1]:.3f} s", flush=True)
                measured.extra.update(extra)
                results[label].append(measured)
                server.drop(name)
    finally:
        server.drop_all()
    loads.append(load())
    best = {label: min(m.wall for m in runs) for label, runs in results.items()}
    median = {label: statistics.median(m.wall for m in runs) for label, runs in results.items()}
    db = {label: min(m.db_seconds for m in runs) for label, runs in results.items()}
    held_label = f"{args.holds} holds"
    print()
    print("| prune | best wall (s) | median wall (s) | best database time (s) | jobs deleted |")
    print("| --- | --- | --- | --- | --- |")
    for label in results:
        print(
            f"| {label} | {best[label]:.2f} | {median[label]:.2f} | {db[label]:.3f} "
            f"| {made.old_jobs} |"
        )
    for label, runs in results.items():
        print(f"{label} per round (s): " + ", ".join(f"{m.wall:.2f}" for m in runs))
    print(f"\nratio (holds / no holds), best wall: {best[held_label] / best['no holds']:.3f}")
    print(f"ratio (holds / no holds), median wall: {median[held_label] / median['no holds']:.3f}")
    print(f"held count after the run (s), median: {statistics.median(counted):.3f}")
    print(f"load average (1, 5, 15 min) before: {loads[0]}, after: {loads[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
