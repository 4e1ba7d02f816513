"""The set-based jobs path (retention.jobs.paths): taken only where Procrastinate's tables have
exactly the triggers, foreign keys and rules Procrastinate defines, so that nothing an
application added to them is skipped; checked again by every batch."""

from __future__ import annotations

import datetime as dt

import procrastinate
import psycopg
import pytest

from retention import errors
from retention.jobs import paths, schemas
from tests.helpers import job_ids, make_settings, orphan_events, run_jobs, seed_bulk

AUDIT = "CREATE TABLE app_audit (job_id bigint, what text)"


def _old_jobs(conn: psycopg.Connection, count: int) -> list[int]:
    specs = [
        {"status": "succeeded", "queue": "q", "task": "t", "finished_ago": dt.timedelta(days=10)}
        for _ in range(count)
    ]
    return seed_bulk(conn, specs)


def _audited(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM app_audit").fetchone()
    assert row is not None
    return int(row[0])


def test_procrastinates_own_schema_takes_the_set_based_path(conn):
    """The catalog of a database whose schema the installed Procrastinate applied is exactly the
    recorded one (a Procrastinate release that changed its triggers fails here first)."""
    expected = schemas.KNOWN[schemas.release(procrastinate.__version__)]
    assert paths.catalog(conn) == set(expected)
    chosen = paths.choose(conn, "auto")
    assert chosen.set_based, chosen.reason
    assert chosen.digest == paths.digest(expected)
    statement = paths.queries.get("procrastinate_catalog_digest").format(
        catalog=paths.sql.SQL(paths.queries.text("procrastinate_catalog"))
    )
    assert conn.execute(statement).fetchone() == (chosen.digest,)


def test_the_setting_normal_always_takes_the_normal_path(conn):
    chosen = paths.choose(conn, "normal")
    assert not chosen.set_based
    assert chosen.reason == 'jobs_path = "normal" in the settings'


def test_an_unknown_procrastinate_release_takes_the_normal_path(conn):
    chosen = paths.choose(conn, "auto", version="9.1.0")
    assert not chosen.set_based
    assert "Procrastinate 9.1.0 is not a version" in chosen.reason


AUDIT_FUNCTION = (
    "CREATE FUNCTION app_audit_delete() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN INSERT INTO app_audit VALUES (OLD.id, TG_TABLE_NAME); RETURN OLD; END $$"
)

# What an application may have added to Procrastinate's tables, each something the set-based path
# would skip (so the normal path must run), with the count of app_audit rows (or rows of the
# app's own table deleted) it leads to when `n` jobs with 3 events each go.
CHANGES = {
    "audit trigger on the jobs": (
        [
            AUDIT_FUNCTION,
            "CREATE TRIGGER app_audit_jobs AFTER DELETE ON procrastinate_jobs "
            "FOR EACH ROW EXECUTE FUNCTION app_audit_delete()",
        ],
        "trigger procrastinate_jobs app_audit_jobs",
        lambda n: n,
    ),
    "audit trigger on the events": (
        [
            AUDIT_FUNCTION,
            "CREATE TRIGGER app_audit_events AFTER DELETE ON procrastinate_events "
            "FOR EACH ROW EXECUTE FUNCTION app_audit_delete()",
        ],
        "trigger procrastinate_events app_audit_events",
        lambda n: 3 * n,
    ),
    "a trigger that fires only in replica mode": (
        [
            AUDIT_FUNCTION,
            "CREATE TRIGGER app_replica_only BEFORE DELETE ON procrastinate_jobs "
            "FOR EACH ROW EXECUTE FUNCTION app_audit_delete()",
            "ALTER TABLE procrastinate_jobs ENABLE REPLICA TRIGGER app_replica_only",
        ],
        "trigger procrastinate_jobs app_replica_only",
        lambda n: 0,
    ),
    "a rule on the events": (
        [
            "CREATE RULE app_audit_rule AS ON DELETE TO procrastinate_events "
            "DO ALSO INSERT INTO app_audit VALUES (OLD.job_id, 'rule')",
        ],
        "rule procrastinate_events app_audit_rule",
        lambda n: 3 * n,
    ),
    "Procrastinate's delete trigger function replaced": (
        [
            "CREATE OR REPLACE FUNCTION procrastinate_unlink_periodic_defers_v1() "
            "RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "UPDATE procrastinate_periodic_defers SET job_id = NULL WHERE job_id = OLD.id; "
            "INSERT INTO app_audit VALUES (OLD.id, 'unlink'); RETURN OLD; END $$",
        ],
        "function procrastinate_unlink_periodic_defers_v1 (its body)",
        lambda n: n,
    ),
    "a Procrastinate trigger disabled": (
        ["ALTER TABLE procrastinate_jobs DISABLE TRIGGER procrastinate_trigger_delete_jobs_v1"],
        "trigger procrastinate_jobs procrastinate_trigger_delete_jobs_v1",
        lambda n: 0,
    ),
    "an application table with a foreign key to the jobs": (
        [
            "CREATE TABLE app_job_results (job_id bigint REFERENCES procrastinate_jobs (id) "
            "ON DELETE CASCADE, result text)",
            "INSERT INTO app_job_results SELECT id, 'ok' FROM procrastinate_jobs",
        ],
        "foreign key app_job_results FOREIGN KEY (job_id) REFERENCES procrastinate_jobs(id)",
        None,
    ),
    "a table inheriting from the events": (
        ["CREATE TABLE app_more_events () INHERITS (procrastinate_events)"],
        "inherits app_more_events procrastinate_events",
        lambda n: 0,
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_anything_an_application_added_means_the_normal_path(conn, database, location, change):
    """The run takes the normal path, says why, and what the application added does its work
    (its trigger fires, its rule runs, its foreign key cascades)."""
    statements, named, audited = CHANGES[change]
    doomed = _old_jobs(conn, 12)
    conn.execute(AUDIT)
    for statement in statements:
        conn.execute(statement)
    chosen = paths.choose(conn, "auto")
    assert not chosen.set_based
    assert named in chosen.reason, chosen.reason
    assert chosen.reason.startswith("the catalog differs from the schema Procrastinate")

    summary = run_jobs(make_settings(database), location)["jobs"]
    assert summary["path"] == "normal"
    assert named in summary["path_reason"]
    assert summary["deleted"] == len(doomed)
    assert job_ids(conn) == set()
    assert orphan_events(conn) == 0
    if audited is None:
        left = conn.execute("SELECT count(*) FROM app_job_results").fetchone()
        assert left == (0,)
    else:
        assert _audited(conn) == audited(len(doomed))


def test_a_trigger_added_during_a_set_based_run_rolls_its_batch_back(conn, database, location):
    """After the first batch (set-based), an application adds an audit trigger on the jobs: the
    next batch sees it before committing and rolls back, the run fails saying why, and the next
    run takes the normal path, where the trigger fires for every job it deletes."""
    doomed = _old_jobs(conn, 30)
    conn.execute(AUDIT)
    conn.execute(AUDIT_FUNCTION)
    added: list[float | None] = []

    def hook(stage, fraction, section) -> None:
        if stage == "jobs" and section is not None and section.deleted and not added:
            added.append(fraction)
            with psycopg.connect(database, autocommit=True) as app:
                app.execute(
                    "CREATE TRIGGER app_audit_jobs AFTER DELETE ON procrastinate_jobs "
                    "FOR EACH ROW EXECUTE FUNCTION app_audit_delete()"
                )

    settings = make_settings(database, batch_size=10)
    with pytest.raises(errors.RunFailed) as failed:
        run_jobs(settings, location, hook=hook)
    assert "changed during this run" in str(failed.value)
    assert "the batch was rolled back" in str(failed.value)
    assert added
    left = job_ids(conn)
    assert len(left) == 20, "the first batch committed, the second rolled back"
    assert orphan_events(conn) == 0
    assert _audited(conn) == 0
    row = conn.execute(
        "SELECT status, summary->'jobs'->>'path', error FROM retention_runs ORDER BY id DESC"
    ).fetchone()
    assert row is not None
    assert row[0] == "failed"
    assert row[1] == "set-based"
    assert "changed during this run" in row[2]

    again = run_jobs(settings, location)["jobs"]
    assert again["path"] == "normal"
    assert "app_audit_jobs" in again["path_reason"]
    assert again["deleted"] == 20
    assert job_ids(conn) == set()
    assert _audited(conn) == 20
    assert set(doomed) >= left


def test_the_plan_says_which_path_and_the_dry_run_selects_the_same_jobs(conn, database, location):
    doomed = _old_jobs(conn, 7)
    preview = {
        name: run_jobs(make_settings(database, jobs_path=name), location, dry_run=True)["jobs"]
        for name in ("auto", "normal")
    }
    assert preview["auto"]["path"] == "set-based"
    assert preview["normal"]["path"] == "normal"
    assert preview["auto"]["deleted"] == preview["normal"]["deleted"] == len(doomed)
    assert preview["auto"]["by"] == preview["normal"]["by"]
    assert job_ids(conn) == set(doomed)
