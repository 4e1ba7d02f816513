"""The prune's archiving statement, run as the engine runs it: the batch's archive lines come back
once (on one of the statement's rows, which are one per status, queue and task), jobs before
their events, as many as the rows deleted. A copy on every row multiplied what the server sent
by the number of groups. Real PostgreSQL; the statement is rolled back."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from psycopg import sql
from psycopg.rows import dict_row

from retention.archive import writer as archive_writer
from retention.jobs import prune
from tests.helpers import make_settings, seed_job

OLD = dt.timedelta(days=40)


def test_archive_lines_come_back_once_jobs_before_events(conn, database, tmp_path: Path):
    jobs = [
        seed_job(conn, status=status, finished_ago=OLD, queue=queue, task=task)
        for status in ("succeeded", "failed")
        for queue in ("q1", "q2")
        for task in ("app.a", "app.b")
    ]
    settings = make_settings(
        database,
        jobs={"succeeded": "30d", "failed": "30d", "archive": True},
        archive={"root": str(tmp_path)},
    )
    now = conn.execute("SELECT now()").fetchone()[0]
    writer = archive_writer.Writer(root=tmp_path, target="jobs", run_id=None)
    segment = prune.prune_target(conn, settings.jobs, now, writer).segments[0]
    assert segment.fused is not None
    with conn.transaction(force_rollback=True):
        for name, value in segment.settings:
            conn.execute(
                sql.SQL("SELECT set_config({}, {}, true)").format(
                    sql.Literal(name), sql.Literal(value)
                )
            )
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(segment.fused.waiting, segment.params(segment.start, 100))
            .fetchall()
        )
    assert len(rows) == 8
    carrying = [row for row in rows if row["archive"] is not None]
    assert len(carrying) == 1
    lines = [json.loads(line) for line in carrying[0]["archive"].split("\n")]
    assert len(lines) == carrying[0]["archive_rows"] == 8 + 3 * 8
    tables = [line["table"] for line in lines]
    assert tables == [["procrastinate_jobs"]] * 8 + [["procrastinate_events"]] * 24
    assert sorted(line["row"]["id"] for line in lines[:8]) == jobs
    assert {line["row"]["job_id"] for line in lines[8:]} == set(jobs)
    assert not list(tmp_path.rglob("*.jsonl.gz"))
