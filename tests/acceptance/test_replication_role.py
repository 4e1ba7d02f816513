"""A session whose session_replication_role is not `origin` fires no trigger and no foreign-key
action: a job deleted there would leave its events and periodic defers behind. Every run and
purge refuses it before anything is deleted (exit 2), whichever way it was set."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from psycopg import conninfo as libpq
from psycopg import sql

from tests.helpers import job_ids, orphan_events, run_cli, seed_job


def _with_options(database: str, **extra: str) -> str:
    params = libpq.conninfo_to_dict(database)
    params.update(extra)
    return libpq.make_conninfo(**params)


@pytest.mark.parametrize(
    "command",
    [
        ("run", "--only", "jobs"),
        ("run", "--only", "jobs", "--dry-run"),
        ("purge", "--status", "succeeded", "--yes"),
    ],
    ids=["run", "dry-run", "purge"],
)
@pytest.mark.parametrize("jobs_path", ["auto", "normal"])
def test_a_replica_session_is_refused_and_nothing_is_deleted(conn, database, command, jobs_path):
    old = {seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10)) for _ in range(3)}
    replica = _with_options(database, options="-c session_replication_role=replica")
    result = run_cli(*command, database=replica, env={"RETENTION_JOBS_PATH": jobs_path})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "session_replication_role is 'replica'" in result.stderr
    assert "nothing was deleted" in result.stderr
    assert "Traceback" not in result.stderr
    assert job_ids(conn) == old
    runs = conn.execute("SELECT count(*) FROM retention_runs").fetchone()
    assert runs == (0,)


def test_a_role_whose_default_is_replica_is_refused(conn, database):
    """Set for the role (ALTER ROLE ... SET), as a logical-replication setup might leave it."""
    role = f"retention_replica_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER").format(ident))
    try:
        conn.execute(sql.SQL("ALTER ROLE {} SET session_replication_role = replica").format(ident))
        old = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
        result = run_cli("run", "--only", "jobs", database=_with_options(database, user=role))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "ALTER ROLE <role> RESET session_replication_role" in result.stderr
        assert job_ids(conn) == {old}
        conn.execute(sql.SQL("ALTER ROLE {} RESET session_replication_role").format(ident))
        again = run_cli("run", "--only", "jobs", database=_with_options(database, user=role))
        assert again.returncode == 0, again.stderr
        assert job_ids(conn) == set()
        assert orphan_events(conn) == 0
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
        conn.execute(sql.SQL("DROP ROLE {}").format(ident))
