"""Concurrent drains of one outbox: one drains, the others step aside, every file goes once."""

from __future__ import annotations

import json
import subprocess

from tests.helpers import make_file as _make
from tests.helpers import outbox_entries as _entries
from tests.helpers import queue_files as _queue


def test_concurrent_drains_one_drains_the_others_step_aside(conn, database, tmp_path):
    root = tmp_path / "store"
    names = [f"d{i // 100}/f{i}" for i in range(600)]
    for name in names:
        _make(root, name, 1)
    _queue(conn, root, names)
    procs = [
        subprocess.Popen(
            ["python", "-c", _DRAIN_SCRIPT, database, str(root)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sum(r["deleted"] for r in results) + sum(r["missing"] for r in results) == 600
    assert sum(r["deleted"] for r in results) >= 1
    assert _entries(conn) == []
    assert not any(p.is_file() for p in root.rglob("*"))


_DRAIN_SCRIPT = """
import json, sys, time, psycopg
from retention.files import outbox
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    print(json.dumps(outbox.drain(conn, roots_allowed=[sys.argv[2]], dry_run=False,
                                 deadline=time.monotonic() + 60, batch_size=50).to_json()))
"""
