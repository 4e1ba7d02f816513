"""Processes migrating one empty database at once all succeed."""

from __future__ import annotations

import threading

import psycopg

from retention.pg import migrate


def test_two_processes_migrating_at_once_both_succeed(empty_database):
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(empty_database, autocommit=True) as conn:
                migrate.apply(conn)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    with psycopg.connect(empty_database) as conn:
        applied = [row[0] for row in conn.execute("SELECT name FROM retention_migrations")]
    assert sorted(applied) == [m.name for m in migrate.available()]
