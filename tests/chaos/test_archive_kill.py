"""A crash between an archive file's fsync and its batch's commit: the real `retention run` is
SIGKILLed (and its server sessions ended, as a crash of the host would) while the batch waits
for the commit, after its archive file is durable. The file stays, its rows are not deleted, the
ledger does not record it (verify lists it as unrecorded); the next run archives and deletes the
rows, and restoring both files puts each row back once (at-least-once, deduped by key)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import psycopg

from retention.archive import restore, store
from tests.helpers import cli_env, job_ids, kill_and_end_its_sessions, run_cli, seed_job, wait_for

OLD = dt.timedelta(days=40)


def test_a_kill_after_the_fsync_leaves_an_unrecorded_file_and_every_row(conn, database, tmp_path):
    root = tmp_path / "archive"
    config = tmp_path / "retention.toml"
    config.write_text(
        'max_batch_seconds = 120\nlock_timeout = "60s"\n'
        f'[jobs]\nsucceeded = "30d"\narchive = true\n[archive]\nroot = "{root}"\n'
    )
    old = {seed_job(conn, status="succeeded", finished_ago=OLD) for _ in range(4)}
    before = {
        t: conn.execute(f"SELECT t::text FROM {t} t ORDER BY id").fetchall()
        for t in ("procrastinate_jobs", "procrastinate_events")
    }

    with psycopg.connect(database) as blocker:
        # The batch's ledger record (after the file's fsync, before the commit) waits for this.
        blocker.execute("LOCK TABLE retention_archive_files IN EXCLUSIVE MODE")
        process = subprocess.Popen(
            [sys.executable, "-m", "retention", "--config", str(config), "run", "--only", "jobs"],
            env=cli_env(database),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            (written,) = wait_for(lambda: list(root.rglob("*.jsonl.gz")), what="the archive file")
        finally:
            kill_and_end_its_sessions(conn, process)
        blocker.rollback()

    assert job_ids(conn) == old
    assert store.recorded(conn) == []
    checks, unrecorded = store.verify(conn, root)
    assert checks == []
    assert unrecorded == [str(written.relative_to(root))]
    assert {
        r.values["id"] for r in store.rows(written) if r.table == ("procrastinate_jobs",)
    } == old

    run = run_cli("--config", str(config), "run", "--only", "jobs", database=database)
    assert run.returncode == 0, run.stderr
    assert job_ids(conn) == set()
    assert len(store.recorded(conn)) == 1
    files = sorted(root.rglob("*.jsonl.gz"))
    assert len(files) == 2

    done = restore.restore(conn, files)
    assert done.inserted == {"procrastinate_jobs": 4, "procrastinate_events": 12}
    assert done.refused == {}
    after = {
        t: conn.execute(f"SELECT t::text FROM {t} t ORDER BY id").fetchall()
        for t in ("procrastinate_jobs", "procrastinate_events")
    }
    assert after == before
