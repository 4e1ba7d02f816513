"""Rows another transaction holds locked are skipped, and taken by the next run."""

from __future__ import annotations

import datetime as dt

import psycopg

from tests.helpers import add_event, ids, make_schema
from tests.helpers import execute_tables as execute
from tests.helpers import records_policy as policy


def test_locked_rows_are_skipped_and_taken_next_run(conn, database, location, tmp_path):
    make_schema(conn)
    root = tmp_path / "media"
    first = add_event(conn, root, age=dt.timedelta(days=40), detections=0, notes=0)
    second = add_event(conn, root, age=dt.timedelta(days=40), detections=0, notes=0)
    with psycopg.connect(database) as other:
        other.execute("SELECT 1 FROM app.events WHERE id = %s FOR UPDATE", (first,))
        summary = execute(database, location, [policy(root)])
        assert summary["tables"]["app.events"]["deleted"] == 1
        assert ids(conn, "app.events") == {first}
    again = execute(database, location, [policy(root)])
    assert again["tables"]["app.events"]["deleted"] == 1
    assert ids(conn, "app.events") == set()
    assert second not in ids(conn, "app.events")
