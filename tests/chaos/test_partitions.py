"""A partition drop waits for no lock forever: a partition a reader holds is pruned row by row."""

from __future__ import annotations

import psycopg

from retention.run import runner
from tests.helpers import make_partitioned, make_settings
from tests.helpers import partitioned_policy as policy
from tests.helpers import partitions_of as _partitions


def test_partition_drop_waits_for_no_lock_forever(conn, database, location, tmp_path):
    root = tmp_path / "media"
    make_partitioned(conn, root, per_day=1)
    settings = make_settings(database, tables=[policy(root)], lock_timeout="50ms")
    with psycopg.connect(database) as reader:
        reader.execute("SELECT count(*) FROM events_9")
        summary = runner.execute(
            settings, location, stages=["tables"], dry_run=False, trigger="cli"
        ).to_json()
    section = summary["tables"]["events"]
    assert any("events_9" in e and "LockNotAvailable" in e for e in section["partition_errors"])
    assert "events_9" in _partitions(conn)
    assert "events_8" not in _partitions(conn)
    # its rows went row by row instead, through the engine
    assert conn.execute("SELECT count(*) FROM events_9").fetchone()[0] == 0
