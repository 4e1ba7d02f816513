"""`retention run --json` has the shape the README documents ("The run summary"): every field it
prints is documented for its place, and every field documented as always present is there. Run
with every stage at work (jobs, a partitioned table with a child and files, the outbox, a
`[[directories]]` sweep, the orphan sweep), as a dry run and for real, through the real CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import run_cli, seed_job

README = Path(__file__).resolve().parents[2] / "README.md"
DAY = dt.timedelta(days=1)


def documented() -> dict[str, tuple[set[str], set[str]]]:
    """Per place (run, jobs, table, files, sweep stage, sweep root): (every field, the fields
    always present)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- BEGIN SUMMARY FIELDS -->", 1)[1].split(
        "<!-- END SUMMARY FIELDS -->", 1
    )[0]
    places: dict[str, tuple[set[str], set[str]]] = {}
    for line in block.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("where", "---"):
            continue
        where, fields, kind, _ = cells
        names = set(re.findall(r"`([^`]+)`", fields))
        every, always = places.setdefault(where, (set(), set()))
        every.update(names)
        if "optional" not in kind:
            always.update(names)
    return places


def check(place: str, data: dict[str, Any], places: dict[str, tuple[set[str], set[str]]]) -> None:
    every, always = places[place]
    assert set(data) <= every, f"{place}: undocumented {sorted(set(data) - every)}"
    assert always <= set(data), f"{place}: missing {sorted(always - set(data))}"


def _old(path: Path, days: float) -> None:
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))


@pytest.fixture
def everything(conn: psycopg.Connection, database: str, tmp_path: Path) -> Path:
    media, scratch = tmp_path / "media", tmp_path / "scratch"
    media.mkdir()
    scratch.mkdir()
    conn.execute(
        "CREATE TABLE events (id bigint, at timestamptz NOT NULL, path text,"
        " PRIMARY KEY (id, at)) PARTITION BY RANGE (at)"
    )
    now = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for day in range(60, -2, -1):
        low, high = now - day * DAY, now - (day - 1) * DAY
        conn.execute(
            f"CREATE TABLE events_{day + 10} PARTITION OF events FOR VALUES FROM "
            f"('{low.isoformat()}') TO ('{high.isoformat()}')"
        )
    conn.execute("CREATE INDEX ON events (at, id)")
    conn.execute(
        "CREATE TABLE notes (id serial PRIMARY KEY, created_at timestamptz NOT NULL, file text)"
    )
    conn.execute("CREATE INDEX ON notes (created_at, id)")
    for index in range(12):
        name = f"e{index}.bin"
        (media / name).write_bytes(b"x" * 100)
        conn.execute(
            "INSERT INTO events VALUES (%s, now() - %s * interval '5 days', %s)",
            (index, index, name),
        )
        note = f"n{index}.txt"
        (media / note).write_bytes(b"y" * 10)
        conn.execute(
            "INSERT INTO notes (created_at, file) VALUES (now() - %s * interval '5 days', %s)",
            (index, note),
        )
    orphan = media / "orphan.bin"
    orphan.write_bytes(b"z" * 50)
    _old(orphan, 3)
    for index in range(3):
        stale = scratch / f"old{index}.tmp"
        stale.write_bytes(b"t" * 20)
        _old(stale, 10)
    (scratch / "young.tmp").write_bytes(b"t")
    for index, status in enumerate(["succeeded", "failed", "succeeded"]):
        seed_job(conn, status=status, finished_ago=(40 + index) * DAY, queue=f"q{index}")
    seed_job(conn, status="todo", finished_ago=None)
    config = tmp_path / "retention.toml"
    config.write_text(
        f"""
[jobs]
succeeded = "1d"
failed = "1d"

[orphans]
enabled = true
grace = "1h"

[[tables]]
table = "events"
timestamp = "at"
age = "20d"
key = "id"
files = [{{column = "path", root = "{media}"}}]

[[tables]]
table = "notes"
timestamp = "created_at"
age = "20d"
files = [{{column = "file", root = "{media}"}}]

[[directories]]
root = "{scratch}"
age = "1d"
remove_empty_dirs = true
""",
        encoding="utf-8",
    )
    return config


def _walk(summary: dict[str, Any], places: dict[str, tuple[set[str], set[str]]]) -> None:
    check("run", summary, places)
    check("jobs", summary["jobs"], places)
    assert summary["tables"]
    for table in summary["tables"].values():
        check("table", table, places)
        for partition in table["partitions"]:
            assert set(partition) == {
                "name",
                "rows",
                "rows_exact",
                "child_rows",
                "files_queued",
            }
    check("files", summary["files"], places)
    for stage in ("directories", "orphans"):
        check("sweep stage", summary[stage], places)
        assert summary[stage]["roots"]
        for root in summary[stage]["roots"].values():
            check("sweep root", root, places)


def test_run_json_has_the_documented_shape(everything: Path, database: str):
    places = documented()
    # Every place the table documents (maintenance's are checked by test_maintenance.py).
    assert set(places) == {
        "run",
        "jobs",
        "table",
        "files",
        "sweep stage",
        "sweep root",
        "maintenance",
        "maintenance action",
    }
    plan = run_cli("--config", str(everything), "run", "--dry-run", "--json", database=database)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["summary_version"] == 1
    assert planned["dry_run"] is True
    _walk(planned, places)
    assert planned["jobs"]["deleted"] == 3
    assert planned["tables"]["events"]["partitions_dropped"] > 0

    done = run_cli("--config", str(everything), "run", "--json", database=database)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    _walk(summary, places)
    assert summary["jobs"]["deleted"] == 3
    assert summary["files"]["deleted"] > 0
    assert summary["directories"]["deleted"] == 3
    assert summary["orphans"]["deleted"] == 1

    status = run_cli("--config", str(everything), "status", "--json", database=database)
    assert status.returncode == 0, status.stderr
    latest = json.loads(status.stdout)["runs"][0]
    assert latest["summary"] == summary
    assert isinstance(latest["seconds"], float)
    assert latest["deleted"]["jobs"] == 3
