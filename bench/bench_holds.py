"""Legal hold cost: the jobs prune with `--holds` holds in place against the same prune without
any, side by side on copies of one seeded database (bench_jobs.py's seed and measurement).

    python bench/bench_holds.py --jobs 1000000 --rounds 3
    python bench/bench_holds.py --jobs 20000 --rounds 1        # smoke run, under a minute

The holds, placed on the copy before the run (through `retention.holds.add`, as a user does):
all but 20 name 5 job ids each, taken among the jobs the prune keeps (younger than 30 days), so
that both contenders delete exactly the same jobs and every deleted job is checked against every
hold; 10 name a queue glob and 10 a task glob that match no seeded job (each job's queue and task
are matched against them all). Every batch's statement reads the holds itself: the ids as one
hashed set, the globs as one alternation each. The best wall time of each contender is compared.
Databases are named `bench_jobs_*` and dropped at the end (also after a failure).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_jobs

from retention import holds
from retention.config import settings as settings_mod

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
    try:
        made = bench_jobs.seed(server, template, args.jobs, args.days)
        print(f"seed: {made.jobs} jobs, {made.old_jobs} eligible", flush=True)
        for round_ in range(1, args.rounds + 1):
            for label in results:
                name = f"{bench_jobs.PREFIX}holds_{round_}_{len(results[label])}_{label[:2]}"
                dsn = server.create(name, template)
                extra: dict[str, Any] = {}
                if label != "no holds":
                    extra["holds"] = place(dsn, args.holds, made.old_jobs)
                measured = bench_jobs.measure(server, name, "ours", label, bench_jobs.ours)
                assert measured.deleted_jobs == made.old_jobs, measured.deleted_jobs
                measured.extra.update(extra)
                results[label].append(measured)
                server.drop(name)
    finally:
        server.drop_all()
    best = {label: min(m.wall for m in runs) for label, runs in results.items()}
    db = {label: min(m.db_seconds for m in runs) for label, runs in results.items()}
    base, held = best["no holds"], best[f"{args.holds} holds"]
    print()
    print("| prune | best wall (s) | best database time (s) | jobs deleted |")
    print("| --- | --- | --- | --- |")
    for label in results:
        print(f"| {label} | {best[label]:.2f} | {db[label]:.3f} | {made.old_jobs} |")
    print(f"\nratio (holds / no holds), wall: {held / base:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
