"""A crash between a file's copy into the archive (archive_files) and its unlink: the real
`retention run` is SIGKILLed (and its server sessions ended) while the drain waits to record the
copies it made durable. Every file stays in place with its outbox entry, the copies are there
and unrecorded (verify lists them); the next run copies them again, records them, unlinks the
files and forgets the entries."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys

import psycopg

from retention.archive import store
from tests.helpers import (
    add_event,
    cli_env,
    files_on_disk,
    kill_and_end_its_sessions,
    make_schema,
    records_policy,
    run_cli,
    tables_toml,
    wait_for,
)

OLD = dt.timedelta(days=40)


def test_a_kill_between_the_copy_and_the_unlink_keeps_every_file(conn, database, tmp_path):
    media, archive = tmp_path / "media", tmp_path / "archive"
    make_schema(conn)
    event = add_event(conn, media, age=OLD, detections=2, notes=1)
    contents = {}
    for path in sorted(p for p in media.rglob("*") if p.is_file()):
        data = f"{path.name} of event {event}".encode()
        path.write_bytes(data)
        contents[str(path.relative_to(media))] = data
    config = tmp_path / "retention.toml"
    config.write_text(
        'max_batch_seconds = 120\nlock_timeout = "60s"\n'
        f'[archive]\nroot = "{archive}"\n\n'
        + tables_toml(records_policy(media, archive=True, archive_files=True))
    )
    expected = {
        f"files/{s[:2]}/{s}" for s in (hashlib.sha256(d).hexdigest() for d in contents.values())
    }

    def copies() -> set[str]:
        folder = archive / "files"
        if not folder.is_dir():
            return set()
        return {str(p.relative_to(archive)) for p in folder.glob("*/*") if p.is_file()}

    with psycopg.connect(database) as blocker:
        # The drain's record of its copies (after their fsync, before the unlinks) waits here.
        blocker.execute("LOCK TABLE retention_archived_files IN EXCLUSIVE MODE")
        process = subprocess.Popen(
            [sys.executable, "-m", "retention", "--config", str(config), "run"],
            env=cli_env(database),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: copies() == expected, what="the copies")
            wait_for(
                lambda: conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'retention' AND wait_event_type = 'Lock'"
                ).fetchone()[0],
                what="the record waiting for its lock",
            )
        finally:
            kill_and_end_its_sessions(conn, process)
        blocker.rollback()

    # The rows went (their batch committed); every file is still there, with its entry.
    assert conn.execute("SELECT count(*) FROM app.events").fetchone()[0] == 0
    assert {rel: (media / rel).read_bytes() for rel in files_on_disk(media)} == contents
    queued = conn.execute("SELECT path, archive FROM retention_file_outbox").fetchall()
    assert sorted(queued) == sorted((rel, True) for rel in contents)
    assert store.copies(conn) == []
    checks, unrecorded = store.verify_copies(conn, archive)
    assert checks == []
    assert set(unrecorded) == expected

    run = run_cli("--config", str(config), "run", "--json", database=database)
    assert run.returncode == 0, run.stderr
    assert files_on_disk(media) == set()
    assert conn.execute("SELECT count(*) FROM retention_file_outbox").fetchone()[0] == 0
    recorded = store.copies(conn)
    assert {c.path: c.archive_path for c in recorded} == {
        rel: f"files/{hashlib.sha256(d).hexdigest()[:2]}/{hashlib.sha256(d).hexdigest()}"
        for rel, d in contents.items()
    }
    checks, unrecorded = store.verify_copies(conn, archive)
    assert [c.problem for c in checks] == [None] * len(contents)
    assert unrecorded == []
    for c in recorded:
        assert (archive / c.archive_path).read_bytes() == contents[c.path]
