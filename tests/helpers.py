"""Helpers shared by the tests of every tier (fixtures live in the conftest.py files)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo as libpq

from retention.config import policies
from retention.config import settings as settings_mod
from retention.embedded import server as embedded
from retention.engine import batches
from retention.files import outbox
from retention.pg import database as pg_database
from retention.run import runner

FINAL = policies.FINAL_STATUSES

# The repository, settings and engine limits, jobs as Procrastinate writes them, the CLI.

ROOT = Path(__file__).resolve().parent.parent
# libpq's variables that choose a server.
PG_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


def dsn_for(server: str, dbname: str) -> str:
    params = libpq.conninfo_to_dict(server)
    params["dbname"] = dbname
    return libpq.make_conninfo(**params)


def make_settings(database: str, **overrides: Any) -> settings_mod.Settings:
    return settings_mod.Settings(database_url=database, **overrides)


def jobs_policy(database: str, **ages: str) -> policies.JobsPolicy:
    """The `[jobs]` policy with these ages (e.g. succeeded="30d")."""
    return make_settings(database, jobs=ages).jobs


def prune_limits(
    *, batch_size: int, max_batch_seconds: float, lock_timeout: float
) -> batches.Limits:
    """Engine limits for a walk run directly by a test (`lock_timeout` in seconds), with a
    minute of time budget from now."""
    return batches.Limits(
        batch_size=batch_size,
        max_batch_seconds=max_batch_seconds,
        lock_timeout=dt.timedelta(seconds=lock_timeout),
        deadline=time.monotonic() + 60,
    )


def seed_job(
    conn: psycopg.Connection,
    *,
    status: str,
    finished_ago: dt.timedelta | None,
    queue: str = "default",
    task: str = "app.task",
    with_events: bool = True,
    rewritten: bool = False,
) -> int:
    """Insert a job with the events Procrastinate would have written: deferred, started, then its
    final event `finished_ago` before now (no final event for todo/doing). As with Procrastinate,
    the job's row version and its final event are written by one transaction (which also dates
    the events); `rewritten`: the row is updated again afterwards, with no state change (as the
    `ON DELETE SET NULL` of its worker's row does), so the two no longer share a transaction."""
    row = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status) "
        "VALUES (%s, %s, 'todo') RETURNING id",
        (queue, task),
    ).fetchone()
    assert row is not None
    job_id = row[0]
    with conn.transaction():
        if status != "todo":
            conn.execute(
                "UPDATE procrastinate_jobs SET status = %s WHERE id = %s",
                (
                    "doing" if status in ("doing", "succeeded", "failed", "aborted") else status,
                    job_id,
                ),
            )
            if status in ("succeeded", "failed", "aborted"):
                if status == "aborted":
                    conn.execute(
                        "UPDATE procrastinate_jobs SET abort_requested = true WHERE id = %s",
                        (job_id,),
                    )
                conn.execute(
                    "UPDATE procrastinate_jobs SET status = %s WHERE id = %s", (status, job_id)
                )
        if finished_ago is not None:
            conn.execute(
                "UPDATE procrastinate_events SET at = now() - %s - interval '1 minute' "
                "WHERE job_id = %s",
                (finished_ago, job_id),
            )
            conn.execute(
                "UPDATE procrastinate_events SET at = now() - %s "
                "WHERE job_id = %s AND type::text = %s",
                (finished_ago, job_id, status),
            )
    if not with_events:
        conn.execute("DELETE FROM procrastinate_events WHERE job_id = %s", (job_id,))
    if rewritten:
        conn.execute("UPDATE procrastinate_jobs SET priority = priority WHERE id = %s", (job_id,))
    return job_id


def shares_final_transaction(conn: psycopg.Connection, job_id: int) -> bool:
    """Whether the job's row version was written by the transaction of its latest final event."""
    row = conn.execute(
        "SELECT j.xmin = e.xmin FROM procrastinate_jobs j "
        "JOIN LATERAL (SELECT xmin FROM procrastinate_events "
        "              WHERE job_id = j.id AND type IN ('succeeded', 'failed', 'cancelled', "
        "                                               'aborted') "
        "              ORDER BY at DESC, id DESC LIMIT 1) e ON true WHERE j.id = %s",
        (job_id,),
    ).fetchone()
    return bool(row and row[0])


def job_ids(conn: psycopg.Connection) -> set[int]:
    return {row[0] for row in conn.execute("SELECT id FROM procrastinate_jobs")}


def orphan_events(conn: psycopg.Connection) -> int:
    """Events whose job no longer exists (what a delete of jobs must never leave)."""
    row = conn.execute(
        "SELECT count(*) FROM procrastinate_events e "
        "WHERE NOT EXISTS (SELECT 1 FROM procrastinate_jobs j WHERE j.id = e.job_id)"
    ).fetchone()
    assert row is not None
    return int(row[0])


def cli_env(database: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: none of the shell's RETENTION_*, PG* or DATABASE_URL,
    then DATABASE_URL=database (when given) and `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("RETENTION") or k.startswith("PG") or k == "DATABASE_URL")
    }
    if database is not None:
        env["DATABASE_URL"] = database
    env.update(extra)
    return env


def run_cli(
    *args: str,
    database: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """The real `retention` command in a subprocess."""
    full_env = cli_env(database)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "retention", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        input=input,
        timeout=timeout,
    )


def kill_and_end_its_sessions(conn: psycopg.Connection, process: subprocess.Popen) -> None:
    """SIGKILL a `retention` process, end its server sessions (one may be waiting for a lock
    the test holds) and wait until they are gone."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    conn.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = 'retention'"
    )
    wait_for_killed_sessions(conn)


def wait_for_killed_sessions(conn: psycopg.Connection, timeout: float = 30) -> None:
    """After a client is SIGKILLed, its server session may still commit the statement in flight:
    wait until no `retention` session but ours is left on this database."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = 'retention'"
        ).fetchone()
        if row == (0,):
            return
        time.sleep(0.02)
    raise AssertionError("a killed run's session is still alive")


# Many jobs at once, and a jobs-only run in-process.


def seed_bulk(conn: psycopg.Connection, specs: list[dict[str, Any]]) -> list[int]:
    """Insert many jobs in one transaction, which writes their row versions and their events
    (as Procrastinate writes a job's final status and event together). Each spec: status, queue,
    task, finished_ago (final jobs), events (False: none), via_todo (the final event is
    `cancelled`, as Procrastinate records todo -> succeeded/failed), scheduled_after (a
    `scheduled` event that long after the finish), rewritten (the row is updated again after
    that transaction, with no state change)."""
    if not specs:
        return []
    with conn.transaction():
        ids = _insert_bulk(conn, specs)
    rewritten = [job_id for job_id, spec in zip(ids, specs, strict=True) if spec.get("rewritten")]
    if rewritten:
        conn.execute(
            "UPDATE procrastinate_jobs SET priority = priority WHERE id = ANY(%s)", (rewritten,)
        )
    return ids


def _insert_bulk(conn: psycopg.Connection, specs: list[dict[str, Any]]) -> list[int]:
    rows = conn.execute(
        "INSERT INTO procrastinate_jobs (queue_name, task_name, status, args) "
        "SELECT q, t, s::procrastinate_job_status, jsonb_build_object('n', n) "
        "FROM unnest(%s::text[], %s::text[], %s::text[]) WITH ORDINALITY AS u(q, t, s, n) "
        "RETURNING id, (args->>'n')::int",
        (
            [s["queue"] for s in specs],
            [s["task"] for s in specs],
            [s["status"] for s in specs],
        ),
    ).fetchall()
    ids = [job_id for job_id, _ in sorted(rows, key=lambda row: row[1])]
    ev_job: list[int] = []
    ev_type: list[str] = []
    ev_ago: list[dt.timedelta] = []
    for job_id, spec in zip(ids, specs, strict=True):
        if spec["status"] not in FINAL or not spec.get("events", True):
            continue
        ago = spec["finished_ago"]
        final = "cancelled" if spec.get("via_todo") else spec["status"]
        steps = [("deferred", ago + dt.timedelta(minutes=2))]
        if not spec.get("via_todo") and spec["status"] != "cancelled":
            steps.append(("started", ago + dt.timedelta(minutes=1)))
        steps.append((final, ago))
        if spec.get("scheduled_after") is not None:
            steps.append(("scheduled", ago - spec["scheduled_after"]))
        for kind, when in steps:
            ev_job.append(job_id)
            ev_type.append(kind)
            ev_ago.append(when)
    conn.execute(
        "INSERT INTO procrastinate_events (job_id, type, at) "
        "SELECT j, e::procrastinate_job_event_type, now() - a "
        "FROM unnest(%s::bigint[], %s::text[], %s::interval[]) AS u(j, e, a)",
        (ev_job, ev_type, ev_ago),
    )
    return ids


def run_jobs(
    settings: settings_mod.Settings, location: pg_database.Location, **kwargs: Any
) -> dict:
    kwargs.setdefault("dry_run", False)
    return runner.execute(settings, location, stages=["jobs"], trigger="cli", **kwargs).to_json()


# Application tables with children and files (the `app` schema of the record tests).

RECORDS_SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE app.events (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL,
    kind text NOT NULL DEFAULT 'info',
    image text
);
CREATE INDEX ON app.events (created_at, id);
CREATE TABLE app.detections (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES app.events (id),
    crop text
);
CREATE INDEX ON app.detections (event_id);
CREATE TABLE app.notes (
    id bigserial PRIMARY KEY,
    event_id bigint NOT NULL REFERENCES app.events (id) ON DELETE CASCADE,
    attachment text
);
CREATE INDEX ON app.notes (event_id);
"""


def make_schema(conn: psycopg.Connection) -> None:
    conn.execute(RECORDS_SCHEMA)


def add_event(
    conn: psycopg.Connection,
    root: Path,
    *,
    age: dt.timedelta,
    kind: str = "info",
    detections: int = 2,
    notes: int = 1,
    image: str | None = "make",
) -> int:
    row = conn.execute(
        "INSERT INTO app.events (created_at, kind) VALUES (now() - %s, %s) RETURNING id",
        (age, kind),
    ).fetchone()
    assert row is not None
    event = row[0]
    if image == "make":
        image = f"events/{event}.jpg"
        _write_bytes(root / image, 100)
    conn.execute("UPDATE app.events SET image = %s WHERE id = %s", (image, event))
    for n in range(detections):
        crop = f"crops/{event}-{n}.png"
        _write_bytes(root / crop, 10)
        conn.execute("INSERT INTO app.detections (event_id, crop) VALUES (%s, %s)", (event, crop))
    for n in range(notes):
        attachment = f"notes/{event}-{n}.txt"
        _write_bytes(root / attachment, 1)
        conn.execute(
            "INSERT INTO app.notes (event_id, attachment) VALUES (%s, %s)", (event, attachment)
        )
    return event


def _write_bytes(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def records_policy(root: Path, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "table": "app.events",
        "timestamp": "created_at",
        "age": "30d",
        "files": [{"column": "image", "root": str(root)}],
        "children": [
            {
                "table": "app.detections",
                "column": "event_id",
                "files": [{"column": "crop", "root": str(root)}],
            },
            {
                "table": "app.notes",
                "column": "event_id",
                "files": [{"column": "attachment", "root": str(root)}],
            },
        ],
    }
    base.update(overrides)
    return base


def ids(conn: psycopg.Connection, table: str) -> set[int]:
    return {r[0] for r in conn.execute(f"SELECT id FROM {table}")}


def files_on_disk(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def execute_tables(database, location, tables, *, dry_run=False, stages=("tables", "files"), **kw):
    settings = make_settings(database, tables=tables, **kw)
    return runner.execute(
        settings, location, stages=list(stages), dry_run=dry_run, trigger="cli"
    ).to_json()


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def tables_toml(*policies: dict[str, Any]) -> str:
    lines = []
    for item in policies:
        lines.append("[[tables]]")
        for key, value in item.items():
            if key in ("files", "children"):
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        for file_column in item.get("files", []):
            lines.append("[[tables.files]]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in file_column.items())
        for child in item.get("children", []):
            lines.append("[[tables.children]]")
            lines.extend(f"{k} = {json.dumps(v)}" for k, v in child.items() if k != "files")
            for file_column in child.get("files", []):
                lines.append("[[tables.children.files]]")
                lines.extend(f"{k} = {json.dumps(v)}" for k, v in file_column.items())
    return "\n".join(lines) + "\n"


# Files on disk with an age, and orphan-sweep policies over the `app` fixture's tables.

HOUR = 3600.0


def put(root: Path, rel: str, *, age: float = 2 * HOUR, data: bytes = b"x" * 10) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_symlink() or p.is_file()}


def refer(conn: psycopg.Connection, *paths: str, table: str = "attachments") -> None:
    column = {"attachments": "path", "thumbnails": "file", "avatars": "img"}[table]
    for value in paths:
        conn.execute(f"INSERT INTO {table} ({column}) VALUES (%s)", (value,))


def orphan_policies(root: Path, **orphan: object) -> dict[str, object]:
    return {
        "tables": [
            {
                "table": "attachments",
                "timestamp": "created_at",
                "files": [{"column": "path", "root": str(root)}],
                "children": [
                    {
                        "table": "thumbnails",
                        "column": "attachment_id",
                        "files": [{"column": "file", "root": str(root / "thumbs")}],
                    }
                ],
            },
            {
                "table": "avatars",
                "timestamp": "created_at",
                "enabled": False,
                "files": [{"column": "img", "root": str(root), "delete": False}],
            },
        ],
        "orphans": {"enabled": True, **orphan},
    }


def write_config(path: Path, data: dict[str, object]) -> Path:
    lines: list[str] = []
    orphan = data.get("orphans") or {}
    if orphan:
        lines.append("[orphans]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in orphan.items()]  # type: ignore[union-attr]
    for table in data.get("tables", []):  # type: ignore[union-attr]
        lines.append("[[tables]]")
        for key in ("table", "timestamp", "enabled"):
            if key in table:
                lines.append(f"{key} = {json.dumps(table[key])}")
        lines.append(
            "files = ["
            + ", ".join(
                "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in f.items()) + "}"
                for f in table.get("files", [])
            )
            + "]"
        )
    for directory in data.get("directories", []):  # type: ignore[union-attr]
        lines.append("[[directories]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in directory.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_orphans(database: str, location, root: Path, *, dry_run: bool, **orphan: object):
    settings = make_settings(database, **orphan_policies(root, **orphan))
    return runner.execute(
        settings, location, stages=["orphans"], dry_run=dry_run, trigger="cli"
    ).to_json()


# One configuration with every stage: jobs, a table with files, orphans, a directory.

DAY = 24 * HOUR


def app_config(tmp_path: Path) -> tuple[Path, Path, Path]:
    media, exports = tmp_path / "media", tmp_path / "exports"
    media.mkdir()
    exports.mkdir()
    config = tmp_path / "retention.toml"
    config.write_text(
        f"""
[jobs]
succeeded = "1d"
failed = "10d"

[orphans]
enabled = true

[[tables]]
table = "events"
timestamp = "created_at"
age = "7d"
files = [{{column = "path", root = "{media}"}}]

[[directories]]
root = "{exports}"
age = "2d"
"""
    )
    return config, media, exports


def seed_events(conn: psycopg.Connection, media: Path, *, old: int, fresh: int, days: int) -> None:
    for i in range(old):
        put(media, f"old-{days}-{i}.jpg", age=(days + 1) * DAY, data=b"e" * 100)
        conn.execute(
            "INSERT INTO events (created_at, path) VALUES (now() - %s, %s)",
            (dt.timedelta(days=days, minutes=i), f"old-{days}-{i}.jpg"),
        )
    for i in range(fresh):
        put(media, f"fresh-{i}.jpg", data=b"f" * 100)
        conn.execute("INSERT INTO events (path) VALUES (%s)", (f"fresh-{i}.jpg",))


# A strict reader of the Prometheus text format.

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"


_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"


_LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'


_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})"
    rf"(?:\{{(?P<labels>(?:{_LABEL_NAME}={_LABEL_VALUE})(?:,{_LABEL_NAME}={_LABEL_VALUE})*)?\}})?"
    r" (?P<value>\S+)(?: (?P<ts>-?\d+))?$"
)


_PAIR = re.compile(rf"({_LABEL_NAME})=({_LABEL_VALUE})")


_METRIC_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def _unescape_label(quoted: str) -> str:
    out, i, body = [], 0, quoted[1:-1]
    while i < len(body):
        if body[i] == "\\":
            out.append({"\\": "\\", '"': '"', "n": "\n"}[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A strict reader of the Prometheus text format 0.0.4: every line well formed, one HELP and
    one TYPE per family before its samples, a family's samples together, no duplicate series,
    counters named *_total, values that are floats."""
    assert text.endswith("\n"), "ends with exactly one newline"
    assert not text.endswith("\n\n"), "ends with exactly one newline"
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    helped: set[str] = set()
    typed: dict[str, str] = {}
    finished: set[str] = set()
    current: str | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        assert line, f"{where}: empty line"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert re.fullmatch(_NAME, name), where
                if name != current:
                    assert name not in finished, f"{where}: family split"
                    if current:
                        finished.add(current)
                    current = name
                if parts[1] == "HELP":
                    assert name not in helped, f"{where}: second HELP"
                    assert len(parts) == 4, f"{where}: empty HELP"
                    assert parts[3].strip(), f"{where}: empty HELP"
                    helped.add(name)
                else:
                    assert name not in typed, f"{where}: second TYPE"
                    assert len(parts) == 4, where
                    assert parts[3] in _METRIC_TYPES, where
                    assert not any(key[0] == name for key in samples), f"{where}: TYPE late"
                    typed[name] = parts[3]
            continue
        match = _SAMPLE.match(line)
        assert match, f"{where}: not a sample"
        name = match["name"]
        assert name in typed, f"{where}: sample before HELP/TYPE"
        assert name in helped, f"{where}: sample before HELP/TYPE"
        assert name == current, f"{where}: family split"
        assert name not in finished, f"{where}: family split"
        if typed[name] == "counter":
            assert name.endswith("_total"), f"{where}: counter not named *_total"
        labels = dict(_PAIR.findall(match["labels"] or ""))
        assert len(labels) == len(_PAIR.findall(match["labels"] or "")), f"{where}: label twice"
        assert not any(k.startswith("__") for k in labels), where
        key = (name, frozenset((k, _unescape_label(v)) for k, v in labels.items()))
        assert key not in samples, f"{where}: duplicate series"
        value = match["value"]
        assert value in ("NaN", "+Inf", "-Inf") or re.fullmatch(
            r"-?\d+(\.\d+)?([eE][-+]?\d+)?", value
        ), f"{where}: bad value"
        samples[key] = float(value)
    return samples


def metric_value(samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


# The file outbox.


def queue_files(
    conn: psycopg.Connection, root: Path, names: list[str], source: str = "test"
) -> int:
    with conn.transaction(), conn.cursor() as cur:
        return outbox.enqueue(cur, [(str(root), name, source) for name in names], None)


def outbox_entries(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT path, attempts, last_error IS NOT NULL, refused FROM retention_file_outbox "
        "ORDER BY id"
    ).fetchall()


def make_file(root: Path, name: str, size: int = 10) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@contextlib.contextmanager
def undeletable(path: Path) -> Iterator[str]:
    """Make `path` impossible to unlink, even for root: the immutable attribute when the
    filesystem supports it, else replace the file with a non-empty directory."""
    if (
        shutil.which("chattr")
        and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    ):
        try:
            yield "immutable"
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")
    try:
        yield "directory"
    finally:
        shutil.rmtree(path)


# A range-partitioned table with a child table and files.

PARTITION_DAYS = 10


def make_partitioned(conn: psycopg.Connection, root: Path, *, per_day: int = 6) -> None:
    conn.execute(
        """
        CREATE TABLE events (
            id bigint GENERATED ALWAYS AS IDENTITY,
            created_at timestamptz NOT NULL,
            image text,
            PRIMARY KEY (id, created_at)
        ) PARTITION BY RANGE (created_at);
        CREATE TABLE events_default PARTITION OF events DEFAULT;
        CREATE TABLE detections (
            id bigserial PRIMARY KEY,
            event_id bigint NOT NULL,
            event_at timestamptz NOT NULL,
            crop text,
            FOREIGN KEY (event_id, event_at) REFERENCES events ON DELETE CASCADE
        );
        CREATE INDEX ON detections (event_id, event_at);
        """
    )
    today = conn.execute("SELECT date_trunc('day', now())").fetchone()[0]
    for day in range(PARTITION_DAYS, -2, -1):
        low = today - dt.timedelta(days=day)
        conn.execute(
            f'CREATE TABLE "events_{day}" PARTITION OF events '
            f"FOR VALUES FROM ('{low.isoformat()}') TO "
            f"('{(low + dt.timedelta(days=1)).isoformat()}')"
        )
    for day in range(PARTITION_DAYS, -1, -1):
        for n in range(per_day):
            at = today - dt.timedelta(days=day) + dt.timedelta(hours=4 * n, minutes=1)
            row = conn.execute(
                "INSERT INTO events (created_at) VALUES (%s) RETURNING id", (at,)
            ).fetchone()
            assert row is not None
            image = f"img/{row[0]}.jpg"
            _write_partition_file(root / image)
            conn.execute("UPDATE events SET image = %s WHERE id = %s", (image, row[0]))
            crop = f"crop/{row[0]}.png"
            _write_partition_file(root / crop)
            conn.execute(
                "INSERT INTO detections (event_id, event_at, crop) VALUES (%s, %s, %s)",
                (row[0], at, crop),
            )
    # rows far in the past in the default partition: pruned row by row, never dropped
    conn.execute("INSERT INTO events (created_at, image) VALUES (now() - interval '400 days', '')")


def _write_partition_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"12345")


def partitioned_policy(root: Path) -> dict:
    return {
        "table": "events",
        "timestamp": "created_at",
        "key": "id",
        "age": "132h",
        "files": [{"column": "image", "root": str(root)}],
        "children": [
            {
                "table": "detections",
                "column": "event_id",
                "files": [{"column": "crop", "root": str(root)}],
            }
        ],
    }


def partitions_of(conn: psycopg.Connection) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        )
    }


# `retention demo`, and what its policies make eligible, counted independently.

DEMO_FINAL_AGES = {
    "succeeded": "3 days",
    "failed": "30 days",
    "cancelled": "7 days",
    "aborted": "7 days",
}


_DETECTION = re.compile(r"det-(\d+)\.png$")


def demo_json(*args: str, **kwargs: Any) -> dict[str, Any]:
    result = run_cli("demo", "--json", *args, **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def files_by_detection(root: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            match = _DETECTION.search(name)
            if match:
                found[int(match.group(1))] = Path(folder, name)
    return found


def unreferenced(files: Path) -> list[Path]:
    return sorted((files / "thumbnails" / "unsorted").iterdir()) + sorted(
        (files / "images" / "unsorted").iterdir()
    )


def eligible_counts(
    conn: psycopg.Connection, retention_days: int = 30, log_retention_days: int = 7
) -> dict[str, int]:
    """What the demo's policies make eligible, counted here independently of the code under test."""
    jobs = conn.execute(
        """
        SELECT count(*) FROM procrastinate_jobs j
         WHERE j.status::text = ANY(%(final)s)
           AND (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id)
               < now() - (%(ages)s::jsonb ->> j.status::text)::interval
        """,
        {"final": list(DEMO_FINAL_AGES), "ages": json.dumps(DEMO_FINAL_AGES)},
    ).fetchone()[0]
    days = f"{retention_days} days"
    events = conn.execute(
        "SELECT count(*) FROM retention_demo.events WHERE started_at < now() - %s::interval",
        (days,),
    ).fetchone()[0]
    detections = conn.execute(
        "SELECT count(*) FROM retention_demo.detections d JOIN retention_demo.events e "
        "ON e.id = d.event_id WHERE e.started_at < now() - %s::interval",
        (days,),
    ).fetchone()[0]
    gpu = conn.execute(
        "SELECT count(*) FROM retention_demo.gpu_stats WHERE recorded_at < now() - %s::interval",
        (days,),
    ).fetchone()[0]
    logs = conn.execute(
        "SELECT count(*) FROM retention_demo.logs WHERE logged_at < now() - %s::interval",
        (f"{log_retention_days} days",),
    ).fetchone()[0]
    return {
        "jobs": jobs,
        "events": events,
        "detections": detections,
        "gpu_stats": gpu,
        "logs": logs,
    }


# Processes that use the embedded server.

EMBEDDED_CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path

    from retention.embedded import server as embedded

    if sys.argv[2] == "own-handler":
        def leave(signum, frame):
            raise SystemExit(3)

        signal.signal(signal.SIGTERM, leave)
    if sys.argv[2] == "stop":
        print(embedded.stop(Path(sys.argv[1])), flush=True)
        sys.exit(0)
    conninfo = embedded.start(Path(sys.argv[1]))
    if sys.argv[2] == "worker":
        from procrastinate import signals

        stopped = []
        with signals.on_stop(lambda: stopped.append(True)):
            print(conninfo, flush=True)
            while not stopped:
                time.sleep(0.02)
        assert signal.getsignal(signal.SIGTERM) is embedded._on_terminate
        sys.exit(0)
    print(conninfo, flush=True)
    if sys.argv[2] != "exit":
        time.sleep(60)
    """
)


class Child(subprocess.Popen[str]):
    """A child process whose pipes are closed once it has been waited for (a test reads what it
    needs first; a pipe left open would be reported as an unclosed file)."""

    def wait(self, timeout: float | None = None) -> int:
        code = super().wait(timeout)
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        return code


def spawn(home: Path, mode: str) -> Child:
    path = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    return Child(
        [sys.executable, "-c", EMBEDDED_CHILD, str(home), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def first_line(process: subprocess.Popen[str], timeout: float = 30) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            pytest.fail("the child process printed nothing")
    line = process.stdout.readline().strip()
    if not line:
        _, stderr = process.communicate(timeout=30)
        pytest.fail(f"the child process failed:\n{stderr}")
    return line


def run_child(home: Path, mode: str) -> str:
    process = spawn(home, mode)
    line = first_line(process)
    assert process.wait(timeout=30) == 0
    return line


def handle_pids(home: Path) -> list[int]:
    return json.loads((embedded.data_dir(home) / ".handle_pids.json").read_text())


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# Commands as a user's shell runs them: workers in the background, the ledger they write.

BIN = Path(sys.executable).parent


# A schedule whose latest tick is long past: a starting worker defers nothing periodic (it only
# catches up ticks of the last 10 minutes).
QUIET_SCHEDULE = "0 0 1 1 *"


RUN_WORKER = "retention worker"


RUN_WORKER_ONCE = "retention worker --one-shot"


def shell_env(database: str, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: DATABASE_URL set, the virtualenv's commands on PATH,
    nothing else of ours or Procrastinate's."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RETENTION_", "PG", "PROCRASTINATE_")) and key != "DATABASE_URL"
    }
    env["DATABASE_URL"] = database
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RETENTION_SCHEDULE"] = QUIET_SCHEDULE
    env.update(extra)
    return env


def wait_for(check: Callable[[], Any], *, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or check}")
        time.sleep(0.1)


@dataclasses.dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout:g} s:\n{self.output()}") from None

    def terminate(self, timeout: float = 30, ready: float = 10) -> int:
        """SIGTERM, once a worker has installed its signal handlers: Procrastinate registers
        the worker's row before it installs them, and logs "Starting worker on ..." right
        before, so a SIGTERM sent as soon as the row shows can still kill it outright (-15).
        A process that never logs that line (not a worker, or quieter logs) gets the signal
        after `ready` seconds."""
        deadline = time.monotonic() + ready
        while (
            self.popen.poll() is None
            and "Starting worker on" not in self.output()
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)


def launcher(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start a command line (split as a shell would) in the background; killed at teardown."""
    started: list[Process] = []

    def start(command: str, env: dict[str, str], cwd: Path = tmp_path) -> Process:
        log = tmp_path / f"process-{len(started)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                shlex.split(command), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )
        started.append(Process(popen, log))
        return started[-1]

    yield start
    for process in started:
        if process.popen.poll() is None:
            process.popen.kill()
            process.popen.wait()


def run_shell(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command exactly as written in the README, run by the shell."""
    return subprocess.run(
        command, shell=True, env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def workers(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0]


def jobs_by_task(conn: psycopg.Connection) -> dict[str, list[tuple[int, str, dict[str, Any]]]]:
    found: dict[str, list[tuple[int, str, dict[str, Any]]]] = {}
    for job_id, task, status, args in conn.execute(
        "SELECT id, task_name, status::text, args FROM procrastinate_jobs ORDER BY id"
    ):
        found.setdefault(task, []).append((job_id, status, args))
    return found


def ledger_runs(conn: psycopg.Connection) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT id, kind, trigger, status, dry_run, summary FROM retention_runs ORDER BY id"
    )
    names = [column.name for column in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur]


# A settings file.


def write_toml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "retention.toml"
    path.write_text(textwrap.dedent(body))
    return path


# The README's code blocks and the shell commands they show.

SHELL_LANGUAGES = frozenset({"bash", "sh", "console", "shell"})


@dataclasses.dataclass(frozen=True)
class CodeBlock:
    line: int  # of the opening fence, 1-based
    language: str
    heading: str  # the section it is in
    body: str


@dataclasses.dataclass(frozen=True)
class ShellCommand:
    text: str
    line: int
    block: CodeBlock


def code_blocks(markdown: str) -> list[CodeBlock]:
    """Fenced code blocks (indented fences too, as in list items), with the heading above each."""
    blocks: list[CodeBlock] = []
    heading = ""
    opened: tuple[int, str, str] | None = None  # line, indent + fence, language
    body: list[str] = []
    for number, line in enumerate(markdown.splitlines(), 1):
        stripped = line.lstrip()
        if opened is None:
            if stripped.startswith("```"):
                indent = line[: len(line) - len(stripped)]
                opened = (number, indent + "```", stripped[3:].strip().lower())
                body = []
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
        elif line.rstrip() == opened[1] or stripped.rstrip() == "```":
            blocks.append(CodeBlock(opened[0], opened[2], heading, "\n".join(body)))
            opened = None
        else:
            indent = len(opened[1]) - 3
            body.append(line[indent:] if line[:indent].strip() == "" else line)
    assert opened is None, f"line {opened[0]}: a code block is never closed"
    return blocks


def shell_commands(block: CodeBlock) -> list[ShellCommand]:
    """The commands of a shell block. When a line of the block starts with the `$ ` prompt, the
    commands are the prompted lines and everything else is their output; otherwise every line is
    a command. Blank lines and `#` comments are not commands; a line ending with a backslash goes
    on on the next one."""
    lines = block.body.splitlines()
    prompted = any(line.startswith("$ ") for line in lines)
    commands: list[ShellCommand] = []
    pending: list[str] = []
    start = 0
    for offset, line in enumerate(lines, 1):
        if pending:
            pending.append(line)
        elif prompted and not line.startswith("$ "):
            continue
        else:
            text = line[2:] if prompted else line
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            pending, start = [text], block.line + offset
        if pending[-1].endswith("\\"):
            continue
        commands.append(ShellCommand("\n".join(pending).strip(), start, block))
        pending = []
    assert not pending, f"line {start}: a command ends with a backslash and nothing follows"
    return commands


def readme_commands(markdown: str | None = None) -> list[ShellCommand]:
    """Every shell command of the README's code blocks, in README order."""
    text = (ROOT / "README.md").read_text() if markdown is None else markdown
    return [
        command
        for block in code_blocks(text)
        if block.language in SHELL_LANGUAGES
        for command in shell_commands(block)
    ]
