"""keep_last per group: a table prune with `keep_last = N` and `per = ["camera_id"]` over rows
spread evenly over the groups, all older than the age, so that every group keeps its newest N
and the rest go. Reports the wall time and the rows deleted.

    python bench/bench_keep_last.py --rows 200000 --groups 100 --keep-last 100
    python bench/bench_keep_last.py --rows 20000 --groups 20 --keep-last 10     # smoke run

The database (`bench_keep_last`) is dropped and made again, with the index on
(camera_id, taken_at, id) the plan asks for, and dropped at the end (also after a failure).
"""

from __future__ import annotations

import argparse
import json
import time

import psycopg
from psycopg import sql

from retention.config import settings as settings_mod
from retention.pg import database, migrate
from retention.run import runner

NAME = "bench_keep_last"
SCHEMA = """
CREATE SCHEMA cams;
CREATE TABLE cams.shots (id bigint PRIMARY KEY, camera_id int NOT NULL, taken_at timestamptz NOT NULL);
INSERT INTO cams.shots
SELECT i, i %% %(groups)s, now() - interval '30 days' - i * interval '1 second'
  FROM generate_series(1, %(rows)s) i;
CREATE INDEX ON cams.shots (camera_id, taken_at, id);
CREATE INDEX ON cams.shots (taken_at, id);
VACUUM ANALYZE cams.shots;
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--keep-last", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--server", default="host=127.0.0.1 user=postgres dbname=postgres")
    args = parser.parse_args(argv)
    with psycopg.connect(args.server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(NAME)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(NAME)))
    dsn = psycopg.conninfo.make_conninfo(args.server, dbname=NAME)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.apply(conn)
            for statement in SCHEMA.split(";\n"):
                if statement.strip():
                    conn.execute(statement, {"rows": args.rows, "groups": args.groups})
        settings = settings_mod.Settings.model_validate(
            {
                "database_url": dsn,
                "batch_size": args.batch_size,
                "jobs": {"enabled": False},
                "tables": [
                    {
                        "table": "cams.shots",
                        "timestamp": "taken_at",
                        "age": "10d",
                        "keep_last": args.keep_last,
                        "per": ["camera_id"],
                    }
                ],
            }
        )
        location = database.Location(conninfo=dsn, source="DATABASE_URL")
        started = time.perf_counter()
        summary = runner.execute(
            settings, location, stages=["tables"], dry_run=False, trigger="cli"
        ).to_json()
        seconds = time.perf_counter() - started
        with psycopg.connect(dsn) as conn:
            left = conn.execute("SELECT count(*) FROM cams.shots").fetchone()
        section = summary["tables"]["cams.shots"]
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "groups": args.groups,
                    "keep_last": args.keep_last,
                    "deleted": section["deleted"],
                    "left": left[0] if left else None,
                    "batches": section.get("batches"),
                    "seconds": round(seconds, 2),
                }
            )
        )
    finally:
        with psycopg.connect(args.server, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(NAME))
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
