"""Scale curve of the jobs prune: the real `retention run --only jobs` CLI at several seed sizes.

    python bench/bench_scale.py --sizes 100000,1000000,5000000
    python bench/bench_scale.py --sizes 20000,50000             # smoke run, under a minute
    python bench/bench_scale.py --sizes 5000000 --maintenance   # with [maintenance] after the prune

At each size, bench_jobs.py's seed (jobs as Procrastinate writes them, 68.6% of them final and
older than 30 days) is built in its own database, copied once (`CREATE DATABASE ... TEMPLATE`)
after a CHECKPOINT, and the seed dropped (disk). Then, on the copy:

  - the prune: `python -m retention run --only jobs --json` in a subprocess (every final status
    aged 30d, default batch settings), measured as wall time of the process, database time (the
    growth of `pg_stat_database.active_time` of the copy, once its sessions have ended), the
    process's peak memory (`ru_maxrss` of that subprocess, from `os.wait4`) and the WAL written
    (`pg_current_wal_lsn` before and after, by the whole server: other databases' writes on a
    shared server are counted too), and the time per deleted job (wall; net = wall minus the
    no-op run's wall, which takes out the process's start-up; and database);
  - right after, the same command with nothing left to delete: its database time (the target:
    at most 50 ms at every size), wall time and peak memory.

The 1-minute load average (`/proc/loadavg`) is printed at the start and end of each prune: the
machine may be shared. Databases are named `bench_scale_*` and dropped at the end (also after a
failure); the config file lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_jobs

PREFIX = "bench_scale_"
# The jobs path of every run (--jobs-path): "auto" (the set-based path on a superuser) or "normal".
JOBS_PATH = ["auto"]

CONFIG = """
[jobs]
succeeded = "{age}"
failed = "{age}"
cancelled = "{age}"
aborted = "{age}"
"""


@dataclasses.dataclass(kw_only=True)
class Run:
    wall: float
    db_seconds: float
    max_rss_mib: float
    wal_bytes: int
    summary: dict[str, Any]
    load: str


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def cli(dsn: str, config: Path) -> tuple[float, float, dict[str, Any]]:
    """`retention run --only jobs --json` in a subprocess: (wall, peak RSS MiB, summary)."""
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "RETENTION_CONFIG": str(config),
        "RETENTION_JOBS_PATH": JOBS_PATH[0],
    }
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "retention", "run", "--only", "jobs", "--json"],
            stdout=out,
            stderr=err,
            env=env,
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if process.returncode != 0:
            raise RuntimeError(
                f"retention run exited {process.returncode}: {err.read().decode()[-2000:]}"
            )
    return wall, usage.ru_maxrss / 1024, json.loads(text)


def measured_run(server: bench_jobs.Server, name: str, config: Path) -> Run:
    dsn = server.dsn(name)
    before = server.active_seconds(name)
    server.checkpoint()
    wal_before = server.wal_position()
    load_start = load_average()
    wall, rss, summary = cli(dsn, config)
    wal = server.wal_bytes_since(wal_before)
    after = server.active_seconds(name)
    return Run(
        wall=wall,
        db_seconds=after - before,
        max_rss_mib=rss,
        wal_bytes=wal,
        summary=summary,
        load=f"{load_start}-{load_average()}",
    )


def deleted_jobs(summary: dict[str, Any]) -> int:
    jobs = summary["jobs"]
    return int(jobs.get("deleted", jobs.get("jobs_deleted", 0)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(part) for part in text.split(",") if part],
        default=[100_000, 1_000_000],
        help="Jobs seeded at each point of the curve (comma-separated).",
    )
    parser.add_argument("--days", type=int, default=100, help="Days the jobs are spread over.")
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Maintenance database of the PostgreSQL server used.",
    )
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    parser.add_argument(
        "--jobs-path",
        choices=["auto", "normal"],
        default="auto",
        help="jobs_path of the runs: auto (on a superuser, the set-based path) or normal.",
    )
    parser.add_argument(
        "--maintenance",
        action="store_true",
        help="Run the prune with [maintenance] vacuum = true and reindex = true (a VACUUM "
        "(ANALYZE) and a REINDEX of bloated indexes after a run that deleted a large share).",
    )
    args = parser.parse_args(argv)
    JOBS_PATH[0] = args.jobs_path
    server = bench_jobs.Server(args.server)
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    config = scratch / "retention.toml"
    config.write_text(
        CONFIG.format(age=f"{bench_jobs.KEEP_DAYS}d")
        + ("\n[maintenance]\nvacuum = true\nreindex = true\n" if args.maintenance else "")
    )
    made: list[str] = []
    rows: list[dict[str, Any]] = []
    print(f"retention {bench_jobs.source_version()}", flush=True)
    try:
        for size in args.sizes:
            template = f"{PREFIX}seed_{size}"
            name = f"{PREFIX}run_{size}"
            made += [template, name]
            seeded = bench_jobs.seed(server, template, size, args.days)
            server.create(name, template)
            server.drop(template)
            with server.admin() as conn:
                db_bytes = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()[0]  # type: ignore[index]
            print(
                f"{size}: seed {seeded.events} events, {seeded.old_jobs} eligible, "
                f"{seeded.seconds:.1f} s, database {db_bytes / 2**20:.0f} MiB",
                flush=True,
            )
            prune = measured_run(server, name, config)
            noop = measured_run(server, name, config)
            deleted = deleted_jobs(prune.summary)
            if deleted != seeded.old_jobs:
                raise RuntimeError(f"{size}: deleted {deleted} jobs, expected {seeded.old_jobs}")
            row = {
                "jobs": size,
                "events": seeded.events,
                "deleted": deleted,
                "database_mib": round(db_bytes / 2**20),
                "wall_s": round(prune.wall, 2),
                "db_s": round(prune.db_seconds, 3),
                "us_per_job_wall": round(prune.wall / deleted * 1e6, 2),
                "us_per_job_db": round(prune.db_seconds / deleted * 1e6, 2),
                "us_per_job_net": round((prune.wall - noop.wall) / deleted * 1e6, 2),
                "max_rss_mib": round(prune.max_rss_mib, 1),
                "wal_mib": round(prune.wal_bytes / 2**20, 1),
                "wal_bytes_per_job": round(prune.wal_bytes / deleted),
                "longest_batch_s": prune.summary["jobs"].get("longest_batch_seconds"),
                "batches": prune.summary["jobs"].get("batches"),
                "path": prune.summary["jobs"].get("path"),
                "load": prune.load,
                "noop_db_ms": round(noop.db_seconds * 1000, 1),
                "noop_wall_s": round(noop.wall, 2),
                "noop_max_rss_mib": round(noop.max_rss_mib, 1),
                "noop_deleted": deleted_jobs(noop.summary),
                "noop_load": noop.load,
            }
            rows.append(row)
            print(f"  {row}", flush=True)
            server.drop(name)
    finally:
        for name in made:
            server.drop(name)
        config.unlink(missing_ok=True)
        scratch.rmdir()
    print()
    print(
        "| jobs | deleted | wall s | database s | us/job wall | us/job net | us/job database | "
        "peak RSS MiB | "
        "WAL MiB | WAL B/job | longest batch s | load | no-op database ms | no-op wall s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(
            f"| {r['jobs']:,} | {r['deleted']:,} | {r['wall_s']:.2f} | {r['db_s']:.3f} | "
            f"{r['us_per_job_wall']:.2f} | {r['us_per_job_net']:.2f} | {r['us_per_job_db']:.2f} | {r['max_rss_mib']:.1f} | "
            f"{r['wal_mib']:.1f} | {r['wal_bytes_per_job']} | {r['longest_batch_s']} | "
            f"{r['load']} | {r['noop_db_ms']:.1f} | {r['noop_wall_s']:.2f} |"
        )
    if len(rows) > 1:
        for key in ("us_per_job_wall", "us_per_job_net", "us_per_job_db"):
            values = [r[key] for r in rows]
            print(
                f"{key}: max / min across sizes {max(values) / min(values):.2f}x (target <= 1.2x)"
            )
        worst = max(r["noop_db_ms"] for r in rows)
        print(f"no-op database time, worst size: {worst:.1f} ms (target <= 50 ms)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.pop("RETENTION_CONFIG", None)
    sys.exit(main())
