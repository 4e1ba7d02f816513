"""Record retention benchmark: rows, files and partitions.

    python bench/bench_records.py --events 1000000 --files 3000000 --partition-rows 10000000

Rows. A seed database holds `--events` events over `--days` days (ids follow time) and three
detections per event, each with a file path; indexes on events (created_at, id) and detections
(event_id); VACUUM ANALYZE. Two contenders, each on its own `CREATE DATABASE ... TEMPLATE` copy
after a CHECKPOINT, delete every event older than 30 days with its detections and queue the
detections' paths in the file outbox:
  - the floor: one transaction, two statements (the detections with their paths into the outbox,
    then the events), no batching;
  - ours: `retention` (records + engine, default batch settings: batch_size 5000,
    max_batch_seconds 1.0), the tables stage of a real run.
Measured: wall time, rows per second (events + detections), database time (growth of
pg_stat_database.active_time of the copy: time its sessions spent executing statements), the
longest transaction (floor: the whole thing; ours: the engine's longest batch).

Files. `--files` files (`--file-bytes` each) in 1000 directories, queued in the outbox; the
drain (`outbox.drain`, what the files stage runs) is timed; then the same files are created again
and `find DIR -type f -delete` is timed. Rates in files per second. The drain checks every entry
against a configured file column (`photos.image`) holding `--surviving-rows` rows that name other
files (`--shared-names`: files of the same names in other directories, so that every entry's name
matches and the directories are compared on disk); `ours_unchecked` is the same drain with no file
column configured, for the cost of that check.

Partitions. `--partition-rows` rows in a table range-partitioned by day over `--days` days (plus a
default partition), no children, no file columns. The policy's age puts the cutoff one minute
after a midnight, so that every partition but one is dropped whole and the straddling one has a
minute of rows. Measured separately: the partition drops (partitions.drop: DETACH + DROP,
several partitions per transaction; wall and database time), then the whole tables stage (drops
already done: only the straddling minute, through the engine). Side by side, on another copy of
the same seed: a bare `DROP TABLE` of the same partitions in one statement (the floor: what
PostgreSQL itself costs, mostly removing the relation files at commit). `--rounds` rounds,
interleaved.

Databases are named `bench_records_*` and dropped at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as libpq
from psycopg import sql

from retention.config import settings as settings_mod
from retention.engine import batches
from retention.files import outbox
from retention.pg import database, migrate
from retention.run import runner
from retention.tables import partitions, planning

PREFIX = "bench_records_"


def dsn(server: str, name: str) -> str:
    params = libpq.conninfo_to_dict(server)
    params["dbname"] = name
    return libpq.make_conninfo(**params)


def admin(server: str, statement: sql.Composable | str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


def create(server: str, name: str, template: str | None = None) -> str:
    admin(server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    if template:
        admin(
            server,
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            ),
        )
    else:
        admin(server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return dsn(server, name)


def drop_all(server: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (PREFIX + "%",)
            )
        ]
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def active_ms(server: str, name: str) -> float:
    time.sleep(1.2)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT active_time FROM pg_stat_database WHERE datname = %s", (name,)
        ).fetchone()
    return float(row[0] or 0.0) if row else 0.0


def checkpoint(server: str) -> None:
    admin(server, "CHECKPOINT")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- rows -------------------------------------------------------------------------------------

ROWS_SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.events (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    kind text NOT NULL,
    payload text
);
CREATE TABLE app.detections (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES app.events (id),
    crop text,
    score real
);
"""


def seed_rows(server: str, events: int, days: int) -> str:
    name = PREFIX + "rows_seed"
    conninfo = create(server, name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        migrate.apply(conn)
        conn.execute(ROWS_SCHEMA)
        conn.execute(
            "INSERT INTO app.events (created_at, kind, payload) "
            "SELECT now() - (%(n)s - g) * (%(days)s * interval '1 day' / %(n)s), "
            "(ARRAY['motion', 'person', 'car'])[1 + g %% 3], repeat('x', 40) "
            "FROM generate_series(1, %(n)s) g",
            {"n": events, "days": days},
        )
        conn.execute(
            "INSERT INTO app.detections (event_id, crop, score) "
            "SELECT e.id, 'd' || (e.id % 1000) || '/' || e.id || '-' || k || '.jpg', random() "
            "FROM app.events e, generate_series(1, 3) k"
        )
        conn.execute("CREATE INDEX ON app.events (created_at, id)")
        conn.execute("CREATE INDEX ON app.detections (event_id)")
        conn.execute("VACUUM ANALYZE")
    return name


def rows_policy() -> dict[str, Any]:
    return {
        "table": "app.events",
        "timestamp": "created_at",
        "age": "30d",
        "children": [
            {
                "table": "app.detections",
                "column": "event_id",
                "files": [{"column": "crop", "root": "/srv/bench-media"}],
            }
        ],
    }


def floor_rows(server: str, seed: str) -> dict[str, Any]:
    name = PREFIX + "rows_floor"
    conninfo = create(server, name, seed)
    checkpoint(server)
    before = active_ms(server, name)
    started = time.monotonic()
    with psycopg.connect(conninfo) as conn:
        cutoff = conn.execute("SELECT now() - interval '30 days'").fetchone()[0]
        children = conn.execute(
            "WITH gone AS (DELETE FROM app.detections d USING app.events e "
            "WHERE d.event_id = e.id AND e.created_at < %(c)s RETURNING d.crop), "
            "queued AS (INSERT INTO retention_file_outbox (root, path, source) "
            "SELECT '/srv/bench-media', crop, 'table:app.detections.crop' FROM gone "
            "WHERE crop <> '' RETURNING 1) "
            "SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM queued)",
            {"c": cutoff},
        ).fetchone()
        parents = conn.execute(
            "DELETE FROM app.events WHERE created_at < %(c)s", {"c": cutoff}
        ).rowcount
        conn.commit()
    wall = time.monotonic() - started
    db_ms = active_ms(server, name) - before
    rows = parents + children[0]
    return {
        "events": parents,
        "detections": children[0],
        "files_queued": children[1],
        "wall_s": round(wall, 2),
        "db_s": round(db_ms / 1000, 2),
        "rows_per_s": round(rows / wall),
        "longest_transaction_s": round(wall, 2),
    }


def ours_rows(server: str, seed: str) -> dict[str, Any]:
    name = PREFIX + "rows_ours"
    conninfo = create(server, name, seed)
    checkpoint(server)
    settings = settings_mod.Settings(database_url=conninfo, tables=[rows_policy()])
    location = database.Location(conninfo=conninfo, source="DATABASE_URL")
    before = active_ms(server, name)
    started = time.monotonic()
    summary = runner.execute(
        settings, location, stages=["tables"], dry_run=False, trigger="cli"
    ).to_json()
    wall = time.monotonic() - started
    db_ms = active_ms(server, name) - before
    section = summary["tables"]["app.events"]
    rows = section["deleted"] + section["child_rows"]
    return {
        "events": section["deleted"],
        "detections": section["child_rows"],
        "files_queued": section["files_queued"],
        "wall_s": round(wall, 2),
        "db_s": round(db_ms / 1000, 2),
        "rows_per_s": round(rows / wall),
        "longest_transaction_s": section["longest_batch_seconds"],
        "batches": section["batches"],
        "lock_backoffs": section["lock_backoffs"],
        "complete": summary["complete"],
    }


# --- files ------------------------------------------------------------------------------------


def make_files(root: Path, count: int, size: int, layout: str) -> list[str]:
    """`count` files in 1000-file directories. grouped: consecutive files share a directory
    (d0 holds f0..f999, as with date-based directories and time-ordered deletes); interleaved:
    consecutive files are in different directories (f0 in d0, f1 in d1, ...)."""
    shutil.rmtree(root, ignore_errors=True)
    data = b"x" * size
    names = []
    directories = max(1, count // 1000)
    for directory in range(directories):
        (root / f"d{directory}").mkdir(parents=True)
    for n in range(count):
        where = n // 1000 if layout == "grouped" else n % directories
        name = f"d{min(where, directories - 1)}/f{n}.bin"
        with open(root / name, "wb") as handle:
            if data:
                handle.write(data)
        names.append(name)
    subprocess.run(["sync"], check=True)
    return names


def seed_survivors(conninfo: str, root: Path, rows: int, shared_names: bool) -> None:
    """The rows of the file column the drain checks: none names a queued file."""
    pattern = (
        "'elsewhere/d' || (n %% 997) || '/f' || n || '.bin'"
        if shared_names
        else ("'kept/k' || n || '.bin'")
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS photos")
        conn.execute(
            "CREATE TABLE photos (id bigserial PRIMARY KEY, taken_at timestamptz, image text)"
        )
        conn.execute(
            f"INSERT INTO photos (taken_at, image) SELECT now(), {pattern}"
            " FROM generate_series(1, %s) AS n",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE photos")


def drain_columns(conn: psycopg.Connection, root: Path) -> dict[str, Any]:
    """`columns=` for the drain when this version checks references (else nothing)."""
    if "columns" not in inspect.signature(outbox.drain).parameters:
        return {}
    from retention.files import references

    policy = {
        "table": "photos",
        "timestamp": "taken_at",
        "files": [{"column": "image", "root": str(root)}],
    }
    settings = settings_mod.Settings(tables=[policy])
    return {"columns": references.resolve(conn, references.references(settings))}


def ours_drain(
    conninfo: str, root: Path, names: list[str], checked: bool = True
) -> tuple[float, dict[str, Any]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE retention_file_outbox")
        with conn.transaction(), conn.cursor() as cur:
            step = 100_000
            for start in range(0, len(names), step):
                outbox.enqueue(
                    cur, ((str(root), n, "bench") for n in names[start : start + step]), None
                )
        conn.execute("VACUUM ANALYZE retention_file_outbox")
        extra = drain_columns(conn, root) if checked else {}
        started = time.monotonic()
        result = outbox.drain(
            conn, roots_allowed=[root], dry_run=False, deadline=time.monotonic() + 3600, **extra
        ).to_json()
        return time.monotonic() - started, result


def find_delete(root: Path) -> float:
    started = time.monotonic()
    subprocess.run(["find", str(root), "-type", "f", "-delete"], check=True)
    return time.monotonic() - started


def bench_files(
    server: str,
    root: Path,
    count: int,
    size: int,
    layout: str,
    rounds: int,
    survivors: int = 100_000,
    shared_names: bool = False,
) -> dict[str, Any]:
    """`rounds` rounds, each creating the files, then deleting them with one contender; the
    contenders rotate (each round starts one further along)."""
    conninfo = create(server, PREFIX + "files")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        migrate.apply(conn)
    seed_survivors(conninfo, root, survivors, shared_names)
    contenders = ("ours", "ours_unchecked", "find")
    times: dict[str, list[float]] = {name: [] for name in contenders}
    results = []
    for round_ in range(rounds):
        order = contenders[round_ % 3 :] + contenders[: round_ % 3]
        for contender in order:
            names = make_files(root, count, size, layout)
            if contender.startswith("ours"):
                seconds, result = ours_drain(conninfo, root, names, contender == "ours")
                assert result["deleted"] == count, result
                results.append(result)
            else:
                seconds = find_delete(root)
            assert not any(p.is_file() for p in root.rglob("*")), f"{contender} left files"
            times[contender].append(seconds)
            log(f"files ({layout}, round {round_ + 1}): {contender} {seconds:.2f} s")
    shutil.rmtree(root, ignore_errors=True)
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "files": count,
        "bytes_each": size,
        "layout": layout,
        "surviving_rows": survivors,
        "shared_names": shared_names,
        "ours_s": [round(t, 2) for t in times["ours"]],
        "ours_unchecked_s": [round(t, 2) for t in times["ours_unchecked"]],
        "find_s": [round(t, 2) for t in times["find"]],
        "check_cost_median": round(
            statistics.median(times["ours"]) / statistics.median(times["ours_unchecked"]), 2
        ),
        "ours_best_files_per_s": round(count / best["ours"]),
        "find_best_files_per_s": round(count / best["find"]),
        "ratio_best": round(best["find"] / best["ours"], 2),
        "ratio_median": round(median["find"] / median["ours"], 2),
        "ours_result": results[-1],
    }


# --- partitions -------------------------------------------------------------------------------


def seed_partitions(server: str, rows: int, days: int) -> str:
    name = PREFIX + "parts_seed"
    conninfo = create(server, name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        migrate.apply(conn)
        conn.execute(
            "CREATE TABLE metrics (id bigint NOT NULL, at timestamptz NOT NULL, "
            "sensor int NOT NULL, value real) PARTITION BY RANGE (at)"
        )
        conn.execute("CREATE TABLE metrics_default PARTITION OF metrics DEFAULT")
        today = conn.execute("SELECT date_trunc('day', now())").fetchone()[0]
        for day in range(days, -2, -1):
            low = today - dt.timedelta(days=day)
            conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF metrics FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(f"metrics_{low:%Y%m%d}"),
                    sql.Literal(low),
                    sql.Literal(low + dt.timedelta(days=1)),
                )
            )
        conn.execute(
            "INSERT INTO metrics (id, at, sensor, value) "
            "SELECT g, now() - (%(n)s - g) * (%(days)s * interval '1 day' / %(n)s), g %% 100, "
            "random() FROM generate_series(1, %(n)s) g",
            {"n": rows, "days": days},
        )
        conn.execute("CREATE UNIQUE INDEX ON metrics (id, at)")
        conn.execute("CREATE INDEX ON metrics (at)")
        conn.execute("VACUUM ANALYZE metrics")
    return name


def bench_partitions(server: str, seed: str, keep_days: int, label: str) -> dict[str, Any]:
    name = PREFIX + "parts_" + label
    conninfo = create(server, name, seed)
    checkpoint(server)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        now, midnight = conn.execute(
            "SELECT now(), date_trunc('day', now()) - %s * interval '1 day'", (keep_days,)
        ).fetchone()
        total = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    age = now - (midnight + dt.timedelta(minutes=1))
    policy = {
        "table": "metrics",
        "timestamp": "at",
        "key": "id",
        "age": f"{int(age.total_seconds())}s",
    }
    settings = settings_mod.Settings(database_url=conninfo, tables=[policy])
    before = active_ms(server, name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        plan = planning.check(conn, settings)[0]
        cutoff = conn.execute("SELECT now()").fetchone()[0] - plan.age
        limits = runner.limits_for(settings)
        started = time.monotonic()
        drops = partitions.drop(
            conn,
            plan,
            partitions.droppable(conn, plan, cutoff),
            cutoff,
            limits,
            dry_run=False,
            run_id=None,
        )
        drop_wall = time.monotonic() - started
        dropped = [p.to_json() for p in drops.dropped]
        problems = list(drops.problems)
    drop_db = active_ms(server, name) - before
    location = database.Location(conninfo=conninfo, source="DATABASE_URL")
    before = active_ms(server, name)
    started = time.monotonic()
    summary = runner.execute(
        settings, location, stages=["tables"], dry_run=False, trigger="cli"
    ).to_json()
    rest_wall = time.monotonic() - started
    rest_db = active_ms(server, name) - before
    with psycopg.connect(conninfo, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
        older = conn.execute("SELECT count(*) FROM metrics WHERE at < %s", (cutoff,)).fetchone()[0]
    admin(server, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return {
        "rows": total,
        "partitions_dropped": len(dropped),
        "partition_names": [p["name"] for p in dropped],
        "rows_in_dropped_partitions": sum(p["rows"] for p in dropped),
        "drop_errors": problems,
        "drop_wall_s": round(drop_wall, 3),
        "drop_db_s": round(drop_db / 1000, 3),
        "then_stage_wall_s": round(rest_wall, 3),
        "then_stage_db_s": round(rest_db / 1000, 3),
        "then_stage_rows_deleted": summary["tables"]["metrics"]["deleted"],
        "rows_left": left,
        "rows_left_older_than_cutoff": older,
    }


def bare_drop(server: str, seed: str, names: list[str], label: str) -> dict[str, Any]:
    """The floor: one `DROP TABLE` of the given partitions, one transaction, nothing else."""
    name = PREFIX + "parts_bare_" + label
    conninfo = create(server, name, seed)
    checkpoint(server)
    before = active_ms(server, name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        started = time.monotonic()
        conn.execute(
            sql.SQL("DROP TABLE {}").format(
                sql.SQL(", ").join(sql.Identifier(*n.split(".")) for n in names)
            )
        )
        wall = time.monotonic() - started
    db_s = active_ms(server, name) - before
    admin(server, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    return {"partitions": len(names), "wall_s": round(wall, 3), "db_s": round(db_s / 1000, 3)}


def compare_partitions(server: str, seed: str, rounds: int) -> dict[str, Any]:
    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    for round_ in range(rounds):
        ours.append(bench_partitions(server, seed, keep_days=30, label=f"ours{round_}"))
        names = ours[-1].pop("partition_names")
        bare.append(bare_drop(server, seed, names, label=str(round_)))
        log(f"partitions round {round_ + 1}: ours {ours[-1]}, bare DROP {bare[-1]}")
    best_ours = min(r["drop_db_s"] for r in ours)
    best_bare = min(r["db_s"] for r in bare)
    return {
        "ours": ours,
        "bare_drop": bare,
        "ours_drop_db_s": [r["drop_db_s"] for r in ours],
        "bare_drop_db_s": [r["db_s"] for r in bare],
        "best_ours_over_best_bare": round(best_ours / max(best_bare, 1e-9), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--server",
        default=os.environ.get("BENCH_SERVER", "host=127.0.0.1 user=postgres dbname=postgres"),
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=100)
    parser.add_argument("--files", type=int, default=300_000)
    parser.add_argument("--file-bytes", type=int, default=0)
    parser.add_argument("--files-dir", default="/var/tmp/bench-records-files")
    parser.add_argument("--surviving-rows", type=int, default=100_000)
    parser.add_argument("--shared-names", action="store_true")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the files and partitions benchmarks"
    )
    parser.add_argument("--partition-rows", type=int, default=1_000_000)
    parser.add_argument("--only", choices=["rows", "files", "partitions"], action="append")
    args = parser.parse_args()
    parts = args.only or ["rows", "files", "partitions"]
    results: dict[str, Any] = {"args": vars(args)}
    drop_all(args.server)
    try:
        if "rows" in parts:
            log(f"rows: seeding {args.events} events, {3 * args.events} detections")
            seed = seed_rows(args.server, args.events, args.days)
            log("rows: floor")
            results["rows_floor"] = floor_rows(args.server, seed)
            log(f"rows: floor {results['rows_floor']}")
            log("rows: ours")
            results["rows_ours"] = ours_rows(args.server, seed)
            log(f"rows: ours {results['rows_ours']}")
            results["rows_ratio_floor_over_ours"] = round(
                results["rows_floor"]["rows_per_s"] / results["rows_ours"]["rows_per_s"], 2
            )
            drop_all(args.server)
        if "files" in parts:
            for layout in ("grouped", "interleaved"):
                results[f"files_{layout}"] = bench_files(
                    args.server,
                    Path(args.files_dir),
                    args.files,
                    args.file_bytes,
                    layout,
                    args.rounds,
                    args.surviving_rows,
                    args.shared_names,
                )
                log(f"files: {results[f'files_{layout}']}")
            drop_all(args.server)
        if "partitions" in parts:
            log(f"partitions: seeding {args.partition_rows} rows over {args.days} days")
            seed = seed_partitions(args.server, args.partition_rows, args.days)
            results["partitions"] = compare_partitions(args.server, seed, args.rounds)
            log(f"partitions: {results['partitions']}")
    finally:
        drop_all(args.server)
    batches.logger.setLevel("WARNING")
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
