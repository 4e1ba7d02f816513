"""`retention demo` SIGKILLed at random moments, then run again: its rows and files agree."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from retention.demo import demo
from tests.helpers import cli_env, demo_json, eligible_counts, files_by_detection, unreferenced


def test_a_demo_killed_anywhere_recovers_on_the_next_run(
    conn: psycopg.Connection, database: str, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    files = demo.files_dir(home, demo.database_key(conn, embedded=False))
    env = {"RETENTION_HOME": str(home)}
    rng = random.Random()
    for _ in range(4):
        process = subprocess.Popen(
            [sys.executable, "-m", "retention", "demo", "--reset", "--json"],
            env={**cli_env(database), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.5, 2.5))
        process.send_signal(signal.SIGKILL)
        process.wait()

    data = demo_json(database=database, env=env)

    assert eligible_counts(conn) == dict.fromkeys(
        ("jobs", "events", "detections", "gpu_stats", "logs"), 0
    )
    assert conn.execute("SELECT bool_and(files_ready) FROM retention_demo.seeded").fetchone() == (
        True,
    )
    rows = conn.execute(
        "SELECT id, thumbnail_path, image_path FROM retention_demo.detections"
    ).fetchall()
    thumbnails = files_by_detection(files / "thumbnails")
    assert set(thumbnails) == {row[0] for row in rows}
    for detection_id, thumbnail, image in rows:
        assert thumbnails[detection_id] == files / "thumbnails" / thumbnail
        if image is not None:
            assert (files / "images" / image).is_file()
    assert data["run"]["files"]["pending"] == 0
    assert len(unreferenced(files)) == sum(demo.UNREFERENCED.values())
