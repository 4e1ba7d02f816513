"""What a jobs prune costs the live queue: a steady stream of real jobs while a prune runs.

    python bench/bench_live.py --jobs 1000000 --rate 40 --rounds 2
    python bench/bench_live.py --jobs 20000 --baseline 5     # smoke run, about a minute

The seed is bench_jobs.py's (`--jobs` jobs, 68.6% of them final and older than 30 days), built once
and copied (`CREATE DATABASE ... TEMPLATE`) for each contender and round (`--rounds`, the
contenders interleaved):

  - ours: `python -m retention run --only jobs` (the real CLI in a subprocess, every final status
    aged 30d, default batch settings; jobs_path = "auto", on the benchmark's superuser the
    set-based path);
  - ours_normal: the same with RETENTION_JOBS_PATH=normal (the normal path);
  - ours_paced: ours with RETENTION_PAUSE_BETWEEN_BATCHES=10ms (a rest after each batch);
  - builtin: Procrastinate's own `app.job_manager.delete_old_jobs(nb_hours=720, include_failed,
    include_cancelled, include_aborted)` (what its builtin task `remove_old_jobs` runs) in a
    subprocess.

On each copy the stream runs from start to end: `--workers` real `procrastinate` worker processes
(concurrency `--concurrency` each) run a tiny task app of this script's own (`live.tick`, sleeps
`--task-ms`) on the queues live_a, live_b and live_c, and a separate process defers `--rate` jobs
per second at fixed times, round robin over the three queues. After `--warmup` seconds, the
stream is measured for `--baseline` seconds with no prune (the no-prune figure), then the prune
runs, then the stream goes on for `--tail` seconds (so that the jobs deferred during the prune
can start) before everything stops. Each window's bounds are read from the server's clock, the
same clock as the events':

  - throughput: the jobs that finished in the window (their final event's `at`) per second;
  - latency: deferred to started (`procrastinate_events`: the `deferred` and the `started` event
    of each job deferred in the window), p50, p99 and max; a job deferred in the window that has
    not started at the end counts as not started (printed).

The 1-minute load average is printed at the start and end of each window. Databases are named
`bench_live_*` and dropped at the end (also after a failure); every process started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import procrastinate
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_jobs

PREFIX = "bench_live_"
QUEUES = ("live_a", "live_b", "live_c")
TASK = "live.tick"

CONFIG = """
[jobs]
succeeded = "{age}"
failed = "{age}"
cancelled = "{age}"
aborted = "{age}"
"""

WINDOW = """
WITH live AS (
    SELECT id FROM procrastinate_jobs WHERE queue_name = ANY(%(queues)s)
), deferred AS (
    SELECT d.job_id, d.at AS deferred_at,
           (SELECT min(s.at) FROM procrastinate_events s
             WHERE s.job_id = d.job_id AND s.type = 'started') AS started_at
      FROM procrastinate_events d JOIN live ON live.id = d.job_id
     WHERE d.type = 'deferred' AND d.at >= %(start)s AND d.at < %(end)s
), latency AS (
    SELECT extract(epoch FROM started_at - deferred_at) AS seconds
      FROM deferred WHERE started_at IS NOT NULL
)
SELECT (SELECT count(*) FROM deferred),
       (SELECT count(*) FROM deferred WHERE started_at IS NULL),
       (SELECT count(*) FROM procrastinate_events f JOIN live ON live.id = f.job_id
         WHERE f.type IN ('succeeded', 'failed') AND f.at >= %(start)s AND f.at < %(end)s),
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FROM latency),
       (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds) FROM latency),
       (SELECT max(seconds) FROM latency)
"""


@dataclasses.dataclass(kw_only=True)
class Window:
    contender: str
    round: int
    label: str
    seconds: float
    deferred: int
    not_started: int
    finished: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    load: str

    @property
    def throughput(self) -> float:
        return self.finished / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        return (
            f"| {self.contender} | {self.round} | {self.label} | {self.seconds:.1f} | {self.deferred} | "
            f"{self.finished} | {self.throughput:.1f} | {self.p50_ms:.1f} | {self.p99_ms:.1f} | "
            f"{self.max_ms:.1f} | {self.not_started} | {self.load} |"
        )


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def make_app(dsn: str) -> procrastinate.App:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name=TASK, pass_context=False)
    def tick(n: int, task_ms: float) -> None:
        time.sleep(task_ms / 1000)

    return app


def worker_main(dsn: str, name: str, concurrency: int) -> None:
    """A real Procrastinate worker on the live queues (a subprocess of the bench)."""
    app = make_app(dsn)
    app.run_worker(
        name=name,
        queues=list(QUEUES),
        concurrency=concurrency,
        wait=True,
        install_signal_handlers=True,
    )


def deferrer_main(dsn: str, rate: float, task_ms: float) -> None:
    """Defers `rate` jobs per second at fixed times until SIGTERM (a subprocess of the bench)."""
    app = make_app(dsn)
    stop = asyncio.Event()

    async def go() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with app.open_async():
            task = app.tasks[TASK]
            started = loop.time()
            n = 0
            while not stop.is_set():
                due = started + n / rate
                delay = due - loop.time()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
                await task.configure(queue=QUEUES[n % len(QUEUES)]).defer_async(
                    n=n, task_ms=task_ms
                )
                n += 1

    asyncio.run(go())


def builtin_main(dsn: str) -> None:
    bench_jobs.builtin(dsn)


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def stream(server: bench_jobs.Server, name: str, args: argparse.Namespace) -> Iterator[None]:
    """Workers and the deferrer on database `name`, stopped on exit (deferrer first)."""
    workers = [
        spawn(
            "worker",
            "--dsn",
            server.dsn(name, application_name=f"live-worker-{i}"),
            "--name",
            f"live-{i}",
            "--concurrency",
            str(args.concurrency),
        )
        for i in range(args.workers)
    ]
    deferrer: subprocess.Popen[bytes] | None = None
    try:
        dsn = server.dsn(name)
        deadline = time.monotonic() + 30
        with psycopg.connect(dsn, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] < len(  # type: ignore[index]
                workers
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("the workers did not register")
                time.sleep(0.1)
        deferrer = spawn(
            "defer",
            "--dsn",
            server.dsn(name, application_name="live-deferrer"),
            "--rate",
            str(args.rate),
            "--task-ms",
            str(args.task_ms),
        )
        yield
    finally:
        if deferrer is not None:
            stop(deferrer)
        for process in workers:
            stop(process)


def server_now(dsn: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]


def window(
    dsn: str, contender: str, round_: int, label: str, start: Any, end: Any, load: str
) -> Window:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(WINDOW, {"queues": list(QUEUES), "start": start, "end": end}).fetchone()
    assert row is not None
    deferred, not_started, finished, p50, p99, top = row

    def ms(value: Any) -> float:
        return float(value) * 1000 if value is not None else float("nan")

    return Window(
        contender=contender,
        round=round_,
        label=label,
        seconds=(end - start).total_seconds(),
        deferred=deferred,
        not_started=not_started,
        finished=finished,
        p50_ms=ms(p50),
        p99_ms=ms(p99),
        max_ms=ms(top),
        load=load,
    )


# ours_paced's pause_between_batches.
PACED_PAUSE = "10ms"


def prune_process(contender: str, dsn: str, config: Path) -> subprocess.Popen[bytes]:
    if contender in ("ours", "ours_normal", "ours_paced"):
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "RETENTION_CONFIG": str(config),
            "RETENTION_JOBS_PATH": "normal" if contender == "ours_normal" else "auto",
        }
        if contender == "ours_paced":
            env["RETENTION_PAUSE_BETWEEN_BATCHES"] = PACED_PAUSE
        return subprocess.Popen(
            [sys.executable, "-m", "retention", "run", "--only", "jobs"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
    return subprocess.Popen(
        [sys.executable, __file__, "builtin", "--dsn", dsn],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_contender(
    server: bench_jobs.Server,
    template: str,
    contender: str,
    args: argparse.Namespace,
    config: Path,
    eligible: int,
    round_: int,
) -> tuple[Window, Window, dict[str, Any]]:
    name = f"{PREFIX}{contender}_{round_}"
    dsn = server.create(name, template)
    try:
        before = bench_jobs.counts(dsn)[0]
        with stream(server, name, args):
            time.sleep(args.warmup)
            base_start, base_load = server_now(dsn), load_average()
            time.sleep(args.baseline)
            base_end = server_now(dsn)
            base_load += f"-{load_average()}"
            prune_load = load_average()
            prune_start = server_now(dsn)
            started = time.monotonic()
            process = prune_process(contender, server.dsn(name), config)
            _, err = process.communicate()
            wall = time.monotonic() - started
            prune_end = server_now(dsn)
            prune_load += f"-{load_average()}"
            if process.returncode != 0:
                raise RuntimeError(
                    f"{contender} exited {process.returncode}: {err.decode()[-2000:]}"
                )
            time.sleep(args.tail)
        baseline = window(dsn, contender, round_, "no prune", base_start, base_end, base_load)
        during = window(
            dsn, contender, round_, "during the prune", prune_start, prune_end, prune_load
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            left = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE id <= %s", (eligible,)
            ).fetchone()[0]  # type: ignore[index]
        extra = {
            "prune_wall_s": round(wall, 2),
            "seed_jobs_before": before,
            "eligible_left": left,
        }
        for shown in (baseline, during):
            print(f"  {shown.row()}", flush=True)
        print(f"  {contender}: {extra}", flush=True)
        if left:
            raise RuntimeError(f"{contender} left {left} eligible jobs")
        return baseline, during, extra
    finally:
        server.drop(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="Jobs seeded.")
    parser.add_argument("--days", type=int, default=100, help="Days the jobs are spread over.")
    parser.add_argument("--rate", type=float, default=40.0, help="Jobs deferred per second.")
    parser.add_argument("--workers", type=int, default=2, help="Worker processes.")
    parser.add_argument("--concurrency", type=int, default=4, help="Concurrency of each worker.")
    parser.add_argument("--task-ms", type=float, default=10.0, help="What each job sleeps.")
    parser.add_argument("--warmup", type=float, default=5.0, help="Seconds before measuring.")
    parser.add_argument("--baseline", type=float, default=20.0, help="No-prune window, seconds.")
    parser.add_argument("--tail", type=float, default=5.0, help="Stream after the prune, seconds.")
    parser.add_argument(
        "--rounds", type=int, default=1, help="Runs of each contender, interleaved."
    )
    parser.add_argument(
        "--contenders",
        default="ours,ours_normal,builtin",
        help="Comma-separated: ours, ours_normal, ours_paced, builtin.",
    )
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="Maintenance database of the PostgreSQL server used.",
    )
    parser.add_argument("--json", type=Path, help="Also write every figure to this file.")
    args = parser.parse_args(argv)
    server = bench_jobs.Server(args.server)
    template = f"{PREFIX}seed"
    scratch = Path(tempfile.mkdtemp(prefix="bench-live-"))
    config = scratch / "retention.toml"
    config.write_text(CONFIG.format(age=f"{bench_jobs.KEEP_DAYS}d"))
    contenders = [c for c in args.contenders.split(",") if c]
    results: list[tuple[Window, Window, dict[str, Any]]] = []
    print(f"retention {bench_jobs.source_version()}", flush=True)
    try:
        made = bench_jobs.seed(server, template, args.jobs, args.days)
        print(
            f"seed: {made.jobs} jobs, {made.events} events, {made.old_jobs} eligible, "
            f"{made.seconds:.1f} s",
            flush=True,
        )
        for round_ in range(1, args.rounds + 1):
            for contender in contenders:
                results.append(
                    run_contender(server, template, contender, args, config, made.old_jobs, round_)
                )
    finally:
        server.drop(template)
        for round_ in range(1, args.rounds + 1):
            for contender in contenders:
                server.drop(f"{PREFIX}{contender}_{round_}")
        config.unlink(missing_ok=True)
        scratch.rmdir()
    print()
    print(
        "| contender | round | window | seconds | deferred | finished | jobs/s | p50 ms | p99 ms | max ms | "
        "not started | load |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for baseline, during, _ in results:
        print(baseline.row())
        print(during.row())
    print()
    for baseline, during, extra in results:
        print(
            f"{baseline.contender}, round {baseline.round}: prune {extra['prune_wall_s']:.2f} s; throughput during / no prune "
            f"{during.throughput / baseline.throughput:.2f} (target >= 0.90), p99 during / no "
            f"prune {during.p99_ms / baseline.p99_ms:.2f}x (target <= 2x), p50 "
            f"{during.p50_ms / baseline.p50_ms:.2f}x"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "no_prune": {**dataclasses.asdict(b), "throughput": b.throughput},
                        "during": {**dataclasses.asdict(d), "throughput": d.throughput},
                        **extra,
                    }
                    for b, d, extra in results
                ],
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    os.environ.pop("RETENTION_CONFIG", None)
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    if len(sys.argv) > 1 and sys.argv[1] in ("worker", "defer", "builtin"):
        sub = argparse.ArgumentParser()
        sub.add_argument("role")
        sub.add_argument("--dsn", required=True)
        sub.add_argument("--name", default="live")
        sub.add_argument("--concurrency", type=int, default=4)
        sub.add_argument("--rate", type=float, default=40.0)
        sub.add_argument("--task-ms", type=float, default=10.0)
        parsed = sub.parse_args()
        if parsed.role == "worker":
            worker_main(parsed.dsn, parsed.name, parsed.concurrency)
        elif parsed.role == "defer":
            deferrer_main(parsed.dsn, parsed.rate, parsed.task_ms)
        else:
            builtin_main(parsed.dsn)
        sys.exit(0)
    sys.exit(main())
