"""Orphan sweep benchmark: wall time and peak memory of `retention sweep-orphans` over a storage
root of `--files` files and a table of as many referencing rows, against the floor: listing the
files (`find ROOT -type f | wc -l`; also `-mmin +60`, which stats every file as the sweep
must, to apply the grace period) plus one SQL count of the referencing rows.

    python bench/bench_orphans.py --files 1000000 --workdir /var/tmp/bench-orphans

The seed: `--files` empty files in directories of 1,000, all older than the grace period; the
table `attachments (id, created_at, path)` has one row per file for all but `--orphan-share` of
them, plus rows pointing at files that do not exist, so that it holds `--files` rows; one row in
three stores an absolute path, the others paths relative to the root; rows were created over the
last days, and `created_at` has an index (as table retention wants), so that each batch re-checks
the rows written lately. The contenders, each a real
CLI process under `/usr/bin/time -v` (wall clock, maximum resident set size of the process; the
PostgreSQL server's memory is not in it): the floor, the dry run, the real sweep (`--delete`),
then a second sweep with nothing left. The database is named `bench_orphans_*` and dropped at the
end; the files are removed too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo as libpq
from psycopg import sql

from retention.pg import migrate

PER_DIR = 1000


def server() -> str:
    params = libpq.conninfo_to_dict(libpq.make_conninfo(""))
    params.setdefault("dbname", os.environ.get("PGDATABASE") or "postgres")
    return libpq.make_conninfo(**params)


def dsn_for(base: str, dbname: str) -> str:
    params = libpq.conninfo_to_dict(base)
    params["dbname"] = dbname
    return libpq.make_conninfo(**params)


def seed_files(root: Path, count: int) -> None:
    old = time.time() - 3 * 24 * 3600
    for index in range(count):
        folder = root / f"d{index // PER_DIR:05d}"
        if index % PER_DIR == 0:
            folder.mkdir(parents=True)
        path = folder / f"f{index:07d}.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
        os.utime(path, (old, old))


def seed_rows(dsn: str, root: Path, count: int, orphan_share: float) -> int:
    """Rows for every file but one in 1/orphan_share, then rows of missing files up to `count`."""
    step = round(1 / orphan_share) if orphan_share else 0
    orphans = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE attachments (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL "
            "DEFAULT now(), path text)"
        )
        copy_sql = "COPY attachments (created_at, path) FROM STDIN"
        start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for index in range(count):
                if step and index % step == 0:
                    orphans += 1
                    rel = f"missing/m{index:07d}.bin"
                else:
                    rel = f"d{index // PER_DIR:05d}/f{index:07d}.bin"
                stored = f"{root}/{rel}" if index % 3 == 0 else rel
                copy.write_row((start - dt.timedelta(seconds=index / 10), stored))
        conn.execute("CREATE INDEX ON attachments (created_at, id)")
        conn.execute("ANALYZE attachments")
    return orphans


_WALL = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)")
_RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")


def timed(command: list[str] | str, env: dict[str, str], *, shell: bool = False) -> dict[str, Any]:
    wrapped = ["/usr/bin/time", "-v", "sh", "-c", command] if shell else ["/usr/bin/time", "-v"]
    if not shell:
        wrapped += command  # type: ignore[operator]
    done = subprocess.run(wrapped, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{command} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    wall = _WALL.search(done.stderr)
    rss = _RSS.search(done.stderr)
    assert wall, done.stderr
    assert rss, done.stderr
    hours = int(wall.group(1) or 0)
    seconds = hours * 3600 + int(wall.group(2)) * 60 + float(wall.group(3))
    return {"seconds": seconds, "rss_mib": int(rss.group(1)) / 1024, "stdout": done.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--orphan-share", type=float, default=0.1)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/bench-orphans"))
    args = parser.parse_args()

    root = args.workdir / "media"
    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    args.workdir.mkdir(parents=True)
    base = server()
    name = f"bench_orphans_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = dsn_for(base, name)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.apply(conn)
        started = time.monotonic()
        seed_files(root, args.files)
        orphans = seed_rows(dsn, root, args.files, args.orphan_share)
        print(f"seeded in {time.monotonic() - started:.0f} s", file=sys.stderr)
        config = args.workdir / "retention.toml"
        config.write_text(
            "[[tables]]\n"
            'table = "attachments"\n'
            'timestamp = "created_at"\n'
            f'files = [{{column = "path", root = "{root}"}}]\n'
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RETENTION_")},
            "DATABASE_URL": dsn,
            "RETENTION_CONFIG": str(config),
            "RETENTION_MAX_RUN_SECONDS": "3600",
        }
        subprocess.run(["sync"], check=True)
        floor_find = timed(f"find {root} -type f | wc -l", env, shell=True)
        floor_find_old = timed(f"find {root} -type f -mmin +60 | wc -l", env, shell=True)
        floor_sql = timed(
            ["psql", dsn, "-Atc", "SELECT count(*) FROM attachments WHERE path IS NOT NULL"], env
        )
        cli = [sys.executable, "-m", "retention", "sweep-orphans", "--json"]
        dry = timed(cli, env)
        real = timed([*cli, "--delete"], env)
        again = timed([*cli, "--delete"], env)
        dry_root = json.loads(dry["stdout"])["orphans"]["roots"][str(root)]
        real_root = json.loads(real["stdout"])["orphans"]["roots"][str(root)]
        left = int(timed(f"find {root} -type f | wc -l", env, shell=True)["stdout"])
        assert dry_root["deleted"] == real_root["deleted"] == orphans, (dry_root, real_root)
        assert left == args.files - orphans
        assert json.loads(again["stdout"])["orphans"]["deleted"] == 0
        phases = {
            name: json.loads(run["stdout"])["orphans"]["roots"][str(root)]["seconds"]
            for name, run in (("dry_run", dry), ("delete", real), ("second", again))
        }
        result = {
            "files": args.files,
            "rows": args.files,
            "orphans": orphans,
            "floor_find": floor_find,
            "floor_find_old": floor_find_old,
            "floor_sql": floor_sql,
            "dry_run": dry,
            "delete": real,
            "second": again,
            "phases": phases,
        }
        for run in (floor_find, floor_find_old, floor_sql, dry, real, again):
            run.pop("stdout")
        print(json.dumps(result, indent=2))
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
