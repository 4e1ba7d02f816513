"""[maintenance] after a large prune: VACUUM (ANALYZE) and REINDEX INDEX CONCURRENTLY of the jobs
tables, only when the run deleted at least min_deleted_share of the jobs, skipped with a message
for a role that does not own them, described and not run in a dry run; recorded in the ledger."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from retention.pg import database as pg_database
from retention.run import runner
from tests.helpers import job_ids, make_settings, seed_bulk

OLD = dt.timedelta(days=40)


def seed(conn: psycopg.Connection, old: int, fresh: int) -> None:
    seed_bulk(
        conn,
        [
            {"status": "succeeded", "queue": "q", "task": "t", "finished_ago": OLD}
            for _ in range(old)
        ],
    )
    seed_bulk(
        conn,
        [
            {
                "status": "succeeded",
                "queue": "q",
                "task": "t",
                "finished_ago": dt.timedelta(hours=1),
            }
            for _ in range(fresh)
        ],
    )


def run(database: str, location: pg_database.Location, *, dry_run: bool = False, **knobs: object):
    settings = make_settings(
        database,
        jobs={"succeeded": "30d"},
        maintenance={"vacuum": True, "reindex": True, "reindex_bloat_ratio": 0.0, **knobs},
    )
    return runner.execute(
        settings, location, stages=["jobs"], dry_run=dry_run, trigger="cli"
    ).to_json()


def last_vacuum(conn: psycopg.Connection) -> object:
    row = conn.execute(
        "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'"
    ).fetchone()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return row[0] if row else None


def recorded(conn: psycopg.Connection, run_id: int) -> dict:
    row = conn.execute("SELECT summary FROM retention_runs WHERE id = %s", (run_id,)).fetchone()
    assert row is not None
    return row[0] if isinstance(row[0], dict) else json.loads(row[0])


def test_maintenance_runs_after_a_large_share(conn, database, location):
    seed(conn, old=70, fresh=30)
    summary = run(database, location)
    assert summary["jobs"]["deleted"] == 70
    done = summary["maintenance"]
    assert done["skipped"] is None
    assert done["deleted_share"] == 0.7
    assert done["estimate"] in ("pgstatindex", "pg_class")
    statements = [action["statement"] for action in done["actions"]]
    assert 'VACUUM (ANALYZE) "public"."procrastinate_jobs"' in statements
    assert 'VACUUM (ANALYZE) "public"."procrastinate_events"' in statements
    assert any(s.startswith('REINDEX INDEX CONCURRENTLY "public".') for s in statements)
    assert all(action["done"] and action["bytes_after"] is not None for action in done["actions"])
    assert last_vacuum(conn) is not None
    assert recorded(conn, summary["run_id"])["maintenance"] == done
    assert len(job_ids(conn)) == 30


def test_maintenance_does_not_run_under_the_share(conn, database, location):
    seed(conn, old=20, fresh=80)
    summary = run(database, location, min_deleted_share=0.5)
    assert summary["jobs"]["deleted"] == 20
    done = summary["maintenance"]
    assert done["actions"] == []
    assert "20.0% of the jobs, under [maintenance] min_deleted_share = 0.5" in done["skipped"]
    assert last_vacuum(conn) is None


def test_maintenance_off_by_default_leaves_no_trace(conn, database, location):
    seed(conn, old=7, fresh=3)
    settings = make_settings(database, jobs={"succeeded": "30d"})
    summary = runner.execute(
        settings, location, stages=["jobs"], dry_run=False, trigger="cli"
    ).to_json()
    assert "maintenance" not in summary
    assert last_vacuum(conn) is None


def test_dry_run_says_what_it_would_do_and_does_nothing(conn, database, location):
    seed(conn, old=70, fresh=30)
    summary = run(database, location, dry_run=True)
    done = summary["maintenance"]
    assert done["deleted_share"] == 0.7
    assert done["actions"]
    assert all(not action["done"] and action["seconds"] is None for action in done["actions"])
    assert any(a["statement"].startswith("VACUUM (ANALYZE)") for a in done["actions"])
    assert last_vacuum(conn) is None
    assert len(job_ids(conn)) == 100


def test_a_role_that_does_not_own_the_tables_is_told_and_nothing_runs(conn, database):
    seed(conn, old=70, fresh=30)
    role = f"retention_plain_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        ident = sql.Identifier(role)
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
        conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public TO {}").format(ident))
        conn.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident))
        params = conninfo_to_dict(database)
        params["user"] = role
        as_role = make_conninfo(**params)
        location = pg_database.Location(conninfo=as_role, source="DATABASE_URL")
        summary = run(as_role, location)
        assert summary["status"] == "succeeded"
        assert summary["jobs"]["deleted"] == 70
        done = summary["maintenance"]
        assert done["actions"] == []
        assert (
            f"the role {role} does not own procrastinate_events (owner postgres)"
            in (done["skipped"])
        )
        assert "run retention as the owner" in done["skipped"]
        assert last_vacuum(conn) is None
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_maintenance_object_is_the_one_the_readme_documents(conn, database, location):
    from tests.acceptance.test_summary_shape import check, documented

    seed(conn, old=70, fresh=30)
    places = documented()
    for dry_run in (True, False):
        done = run(database, location, dry_run=dry_run)["maintenance"]
        check("maintenance", done, places)
        for action in done["actions"]:
            check("maintenance action", action, places)
