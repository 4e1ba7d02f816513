"""An orphan sweep SIGKILLed midway loses nothing, and the rerun finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.helpers import HOUR, run_cli, tree, write_config
from tests.helpers import orphan_policies as policies


def test_a_sweep_killed_midway_loses_nothing_and_the_rerun_finishes(app, database, tmp_path):
    root = tmp_path / "media"
    oldest = time.time() - 10 * HOUR
    kept = set()
    for d in range(20):
        folder = root / f"d{d}"
        folder.mkdir(parents=True)
        for i in range(500):
            path = folder / f"f{i}.bin"
            path.touch()
            when = oldest + d * 500 + i
            os.utime(path, (when, when))
            if i % 2:
                kept.add(f"d{d}/f{i}.bin")
    first = root / "d0" / "f0.bin"
    with app.cursor() as cur, cur.copy("COPY attachments (path) FROM STDIN") as copy:
        for rel in kept:
            copy.write_row((rel,))
    write_config(tmp_path / "retention.toml", policies(root))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETENTION_", "PG"))}
    env.update(DATABASE_URL=database, RETENTION_BATCH_SIZE="50")
    process = subprocess.Popen(
        [sys.executable, "-m", "retention", "sweep-orphans", "--delete"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    total = 10_000
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if not first.exists():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    process.wait()
    interrupted = sum(1 for _ in root.rglob("*.bin"))
    assert process.returncode == -signal.SIGKILL, "killed after the oldest orphan went"
    assert len(kept) < interrupted < total

    rerun = run_cli("sweep-orphans", "--delete", "--json", database=database, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["orphans"]["deleted"] == interrupted - len(kept)
    assert tree(root) == kept
    runs = app.execute("SELECT status FROM retention_runs ORDER BY id").fetchall()
    assert runs == [("abandoned",), ("succeeded",)]
