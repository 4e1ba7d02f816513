"""Archive cost: the jobs prune with `archive = true` against the same prune without it, side by
side on copies of one seeded database (bench_jobs.py's seed and measurement).

    python bench/bench_archive.py --jobs 300000 --rounds 3                      # set-based path
    python bench/bench_archive.py --jobs 300000 --rounds 3 --jobs-path normal
    python bench/bench_archive.py --jobs 20000 --rounds 1        # smoke run, under a minute

With archiving, every batch's statement also deletes the jobs' events itself and returns the
jobs and events as JSON lines, which are gzip-compressed (level 1), written, fsynced (file and
directory) and recorded in the ledger before the batch commits. Both contenders delete the same
jobs; the best wall time of each is compared. The archive goes to a temporary directory, removed
at the end; databases are named `bench_jobs_archive_*` and dropped at the end (also after a failure;
not other `bench_jobs_*` databases, which another benchmark may be using).
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_jobs

from retention.pg import database
from retention.run import runner


def archiving(root: Path, jobs_path: str = "auto") -> Any:
    """bench_jobs.ours with archive = true under `root`; adds the archive's figures."""

    def call(dsn: str) -> dict[str, Any]:
        base = bench_jobs.ours_settings(dsn, None, jobs_path)
        settings = base.model_copy(
            update={
                "jobs": base.jobs.model_copy(update={"archive": True}),
                "archive": base.archive.model_copy(update={"root": root}),
            }
        )
        location = database.Location(conninfo=dsn, source="DATABASE_URL")
        summary = runner.execute(
            settings, location, stages=["jobs"], dry_run=False, trigger="cli"
        ).to_json()
        jobs = summary["jobs"]
        return {
            "transaction": jobs["longest_batch_seconds"],
            "path": jobs.get("path"),
            "batches": jobs["batches"],
            "stopped": jobs["stopped"],
            "archive": jobs["archive"],
        }

    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300_000, help="Jobs seeded.")
    parser.add_argument("--days", type=int, default=100, help="Days the jobs are spread over.")
    parser.add_argument("--rounds", type=int, default=3, help="Runs of each contender.")
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Maintenance database of the PostgreSQL server used.",
    )
    parser.add_argument(
        "--jobs-path",
        choices=["auto", "normal"],
        default="auto",
        help="jobs_path of both contenders: auto (on a superuser, the set-based path) or normal.",
    )
    args = parser.parse_args(argv)
    server = bench_jobs.Server(args.server)
    template = f"{bench_jobs.PREFIX}archive_seed"
    results: dict[str, list[bench_jobs.Measure]] = {"no archive": [], "archive": []}
    made_names = [template]
    scratch = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    try:
        made = bench_jobs.seed(server, template, args.jobs, args.days)
        print(f"seed: {made.jobs} jobs, {made.old_jobs} eligible", flush=True)
        for round_ in range(1, args.rounds + 1):
            for label in results:
                name = f"{bench_jobs.PREFIX}archive_{round_}_{label[:2]}"
                made_names.append(name)
                server.create(name, template)
                root = scratch / name
                call = (
                    archiving(root, args.jobs_path)
                    if label == "archive"
                    else functools.partial(bench_jobs.ours, jobs_path=args.jobs_path)
                )
                measured = bench_jobs.measure(server, name, "ours", label, call)
                assert measured.deleted_jobs == made.old_jobs, measured.deleted_jobs
                results[label].append(measured)
                server.drop(name)
                shutil.rmtree(root, ignore_errors=True)
    finally:
        for name in made_names:
            server.drop(name)
        shutil.rmtree(scratch, ignore_errors=True)
    best = {label: min(m.wall for m in runs) for label, runs in results.items()}
    db = {label: min(m.db_seconds for m in runs) for label, runs in results.items()}
    print()
    print("| prune | best wall (s) | best database time (s) | jobs deleted |")
    print("| --- | --- | --- | --- |")
    for label in results:
        print(f"| {label} | {best[label]:.2f} | {db[label]:.3f} | {made.old_jobs} |")
    print(f"\nratio (archive / no archive), wall: {best['archive'] / best['no archive']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
