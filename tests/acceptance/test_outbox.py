"""An undeletable file stays in the outbox, shows in `retention status`, and `retention run --only
files` deletes it once it can."""

from __future__ import annotations

import json
import os
import time

from retention.files import outbox
from tests.helpers import make_file as _make
from tests.helpers import outbox_entries as _entries
from tests.helpers import queue_files as _queue
from tests.helpers import run_cli, undeletable

FAR = time.monotonic() + 3600


def test_undeletable_file_is_kept_retried_and_reported(conn, tmp_path, database):
    root = tmp_path / "store"
    stuck = _make(root, "stuck.bin")
    _make(root, "fine.bin")
    _queue(conn, root, ["stuck.bin", "fine.bin"])

    with undeletable(stuck):
        first = outbox.drain(conn, roots_allowed=[root], dry_run=False, deadline=FAR).to_json()
        assert first["failed"] == 1
        assert first["deleted"] == 1
        assert first["pending"] == 1
        assert stuck.exists()
        second = outbox.drain(conn, roots_allowed=[root], dry_run=False, deadline=FAR).to_json()
        assert second["failed"] == 1
        row = conn.execute("SELECT attempts, last_error FROM retention_file_outbox").fetchone()
        assert row[0] == 2
        assert row[1]

        status = run_cli("status", "--json", database=database)
        assert status.returncode == 0, status.stderr
        entries = json.loads(status.stdout)["outbox"]
        assert entries["pending"] == 1
        assert entries["failed"] == 1
        assert entries["problems"][0]["path"] == "stuck.bin"
        assert entries["problems"][0]["attempts"] == 2

    conn.execute("CREATE TABLE uploads (id bigserial PRIMARY KEY, at timestamptz, path text)")
    config = tmp_path / "retention.toml"
    config.write_text(
        f'[[tables]]\ntable = "uploads"\ntimestamp = "at"\n'
        f'files = [{{column = "path", root = "{root}"}}]\n',
        encoding="utf-8",
    )
    third = run_cli("--config", str(config), "run", "--only", "files", "--json", database=database)
    assert third.returncode == 0, third.stderr
    summary = json.loads(third.stdout)["files"]
    assert summary["deleted"] == 1
    assert summary["failed"] == 0
    assert summary["pending"] == 0
    assert not os.path.lexists(stuck)
    assert _entries(conn) == []
