"""SIGKILL the real `retention run` at random points, then run again: a file whose row still exists
is never gone, a file whose row is gone is gone or queued, and in the end everything adds up."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.helpers import cli_env, make_schema, run_cli, wait_for_killed_sessions
from tests.helpers import records_policy as policy
from tests.helpers import tables_toml as _toml

EVENTS = 2000
ITERATIONS = 6
DRAIN_KILLS = 2


def _row_files(conn: psycopg.Connection) -> set[str]:
    """Paths referenced by rows that still exist."""
    found: set[str] = set()
    for query in (
        "SELECT image FROM app.events",
        "SELECT crop FROM app.detections",
        "SELECT attachment FROM app.notes",
    ):
        found |= {r[0] for r in conn.execute(query) if r[0]}
    return found


def _queued(conn: psycopg.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT path FROM retention_file_outbox")}


def _on_disk(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _check(conn: psycopg.Connection, root: Path, everything: set[str]) -> None:
    referenced = _row_files(conn)
    on_disk = _on_disk(root)
    missing = referenced - on_disk
    assert not missing, f"files of existing rows are gone: {sorted(missing)[:5]}"
    orphaned = (on_disk - referenced) - _queued(conn)
    assert not orphaned, f"files of deleted rows neither gone nor queued: {sorted(orphaned)[:5]}"
    assert on_disk <= everything
    detached = conn.execute(
        "SELECT count(*) FROM app.detections d "
        "WHERE NOT EXISTS (SELECT 1 FROM app.events e WHERE e.id = d.event_id)"
    ).fetchone()[0]
    assert detached == 0


def _seed(conn: psycopg.Connection, root: Path) -> set[int]:
    """EVENTS events (every fifth one young), two detections and a note each, a file per row."""
    conn.execute(
        "INSERT INTO app.events (created_at, image) "
        "SELECT now() - CASE WHEN g %% 5 = 0 THEN interval '1 day' "
        "ELSE (31 + g %% 50) * interval '1 day' END, 'events/' || g || '.jpg' "
        "FROM generate_series(1, %s) g",
        (EVENTS,),
    )
    conn.execute(
        "INSERT INTO app.detections (event_id, crop) "
        "SELECT e.id, 'crops/' || e.id || '-' || n || '.png' FROM app.events e, "
        "generate_series(0, 1) n"
    )
    conn.execute(
        "INSERT INTO app.notes (event_id, attachment) "
        "SELECT id, 'notes/' || id || '.txt' FROM app.events"
    )
    for path in _row_files(conn):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"data")
    return {
        r[0]
        for r in conn.execute(
            "SELECT id FROM app.events WHERE created_at > now() - interval '2 days'"
        )
    }


def _start(config: Path, database: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "retention", "--config", str(config), "run", "--json"],
        env=cli_env(database),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill(conn: psycopg.Connection, process: subprocess.Popen[bytes]) -> int:
    alive = process.poll() is None
    if alive:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    wait_for_killed_sessions(conn)
    return int(alive)


def _wait_for_stage(conn: psycopg.Connection, process: subprocess.Popen[bytes], stage: str) -> bool:
    """Wait until the run of `process` reports `stage` in the ledger."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        row = conn.execute(
            "SELECT 1 FROM retention_runs WHERE pid = %s AND status = 'running' AND stage = %s",
            (process.pid, stage),
        ).fetchone()
        if row:
            return True
        time.sleep(0.005)
    return False


def test_sigkill_at_random_points_loses_nothing(conn, database, tmp_path):
    seed = int(os.environ.get("KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    make_schema(conn)
    root = tmp_path / "media"
    young = _seed(conn, root)
    everything = _on_disk(root)
    young_files = {
        r[0]
        for r in conn.execute(
            "SELECT image FROM app.events WHERE id = ANY(%(y)s) "
            "UNION ALL SELECT crop FROM app.detections WHERE event_id = ANY(%(y)s) "
            "UNION ALL SELECT attachment FROM app.notes WHERE event_id = ANY(%(y)s)",
            {"y": list(young)},
        )
    }
    config = tmp_path / "retention.toml"
    config.write_text("batch_size = 1\n" + _toml(policy(root)) + "\n[jobs]\nenabled = false\n")
    killed = 0
    for _ in range(ITERATIONS):
        process = _start(config, database)
        if _wait_for_stage(conn, process, "tables"):
            time.sleep(rng.uniform(0.0, 0.8))
        killed += _kill(conn, process)
        _check(conn, root, everything)
    assert killed >= 2, f"runs finished before being killed (seed {seed}); slow them down"
    for _ in range(DRAIN_KILLS):
        process = _start(config, database)
        if _wait_for_stage(conn, process, "files"):
            time.sleep(rng.uniform(0.0, 0.1))
        killed += _kill(conn, process)
        _check(conn, root, everything)

    done = run_cli("--config", str(config), "run", "--json", database=database, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["complete"], summary
    _check(conn, root, everything)
    assert {r[0] for r in conn.execute("SELECT id FROM app.events")} == young
    assert _on_disk(root) == young_files
    assert conn.execute("SELECT count(*) FROM retention_file_outbox").fetchone()[0] == 0

    stages = conn.execute(
        "SELECT stage FROM retention_runs WHERE status IN ('abandoned', 'running') ORDER BY id"
    ).fetchall()
    print(f"seed {seed}: killed {killed} runs, in stages {[s[0] for s in stages]}")
    assert 1 <= len(stages) <= killed
    statuses = run_cli("status", "--json", database=database)
    assert statuses.returncode == 0
    assert not json.loads(statuses.stdout)["running"]
