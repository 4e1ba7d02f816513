"""`retention run` as a plain role holding exactly the grants the README documents."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import psycopg
import pytest
from psycopg import conninfo as libpq
from psycopg import sql

from tests.helpers import (
    DAY,
    HOUR,
    ROOT,
    add_event,
    dsn_for,
    files_on_disk,
    ids,
    job_ids,
    make_partitioned,
    make_schema,
    partitioned_policy,
    partitions_of,
    put,
    records_policy,
    run_cli,
    seed_job,
    tables_toml,
)

README = ROOT / "README.md"


def documented_grants() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Least privilege") :]
    block = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert block, "the Least privilege section has no ```sql block"
    return [
        line.split("--")[0].strip()
        for line in block.group(1).splitlines()
        if line.strip().upper().startswith("GRANT")
    ]


def set_based_grant() -> str:
    """The one extra grant the README's set-based path section documents."""
    text = README.read_text()
    section = text[text.index("### The set-based path") :]
    block = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert block, "the set-based path section has no ```sql block"
    (grant,) = [line for line in block.group(1).splitlines() if line.startswith("GRANT")]
    return grant


@pytest.mark.parametrize("set_based", [False, True], ids=["normal-path", "set-based-path"])
def test_run_works_with_only_the_documented_grants(conn, database, set_based):
    """The least-privilege grants take the normal path (and say why); with the set-based path's
    one extra grant, the set-based one."""
    role = f"retention_plain_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        for grant in documented_grants():
            conn.execute(grant.rstrip(";").replace(" TO retention", f" TO {role}"))
        if set_based:
            conn.execute(set_based_grant().rstrip(";").replace(" TO retention", f" TO {role}"))
        old = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
        held = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=10))
        keep = seed_job(conn, status="failed", finished_ago=dt.timedelta(days=10))
        params = libpq.conninfo_to_dict(database)
        params["user"] = role
        as_role = libpq.make_conninfo(**params)
        # A row held locked sends the batch to the skip-locked statement, which the grants allow.
        with psycopg.connect(database) as other:
            other.execute("SELECT 1 FROM procrastinate_jobs WHERE id = %s FOR UPDATE", (held,))
            result = run_cli("run", "--json", database=as_role)
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)["jobs"]
        if set_based:
            assert summary["path"] == "set-based", summary["path_reason"]
        else:
            assert summary["path"] == "normal"
            assert "may not set session_replication_role" in summary["path_reason"]
            assert "GRANT SET ON PARAMETER session_replication_role" in summary["path_reason"]
        assert summary["deleted"] == 1
        assert summary["events"] == 3
        assert summary["lock_backoffs"] == 1
        assert job_ids(conn) == {keep, held}
        assert old not in job_ids(conn)
        status = run_cli("status", "--json", database=as_role)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["jobs_path"]["path"] == summary["path"]
        with psycopg.connect(as_role) as plain:
            try:
                plain.execute("CREATE TABLE should_fail (id int)")
                raise AssertionError("the plain role could create a table")
            except psycopg.errors.InsufficientPrivilege:
                pass
    finally:
        if set_based:
            conn.execute(
                sql.SQL("REVOKE SET ON PARAMETER session_replication_role FROM {}").format(
                    sql.Identifier(role)
                )
            )
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_migrate_as_the_plain_role_is_refused_with_a_clear_message(empty_database, conn):
    role = f"retention_plain_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    target = dsn_for(empty_database, libpq.conninfo_to_dict(empty_database)["dbname"])
    params = libpq.conninfo_to_dict(target)
    try:
        with psycopg.connect(empty_database, autocommit=True) as owner:
            owner.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        params["user"] = role
        result = run_cli("migrate", database=libpq.make_conninfo(**params))
        assert result.returncode == 2
        assert "retention migrate needs a role that may create" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        with psycopg.connect(empty_database, autocommit=True) as owner:
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# Per table policy, as the README's Least privilege section says: SELECT, DELETE and UPDATE (key
# column) on the table, SELECT, DELETE on each child table.
POLICY_GRANTS = [
    "GRANT USAGE ON SCHEMA app TO {role}",
    "GRANT SELECT, DELETE ON app.events TO {role}",
    "GRANT UPDATE (id) ON app.events TO {role}",
    "GRANT SELECT, DELETE ON app.detections, app.notes TO {role}",
    "GRANT SELECT, DELETE ON public.events TO {role}",
    "GRANT UPDATE (id) ON public.events TO {role}",
    "GRANT SELECT, DELETE ON public.detections TO {role}",
]


@pytest.mark.parametrize("owner", [False, True], ids=["grants", "owner-member"])
def test_every_policy_shape_works_with_only_the_documented_grants(conn, database, tmp_path, owner):
    """A child deleted first, a cascading child with files, the table's own files, a table
    partitioned on its timestamp (its partitions dropped whole when the role is a member of the
    table's owner, else pruned row by row), a directory sweep and the orphan sweep."""
    role = f"retention_plain_{uuid.uuid4().hex[:8]}"
    owner_role = f"app_owner_{uuid.uuid4().hex[:8]}"
    media, parts, exports = tmp_path / "media", tmp_path / "parts", tmp_path / "exports"
    make_schema(conn)
    old = [add_event(conn, media, age=dt.timedelta(days=40 + i)) for i in range(3)]
    young = add_event(conn, media, age=dt.timedelta(days=1))
    make_partitioned(conn, parts)
    put(media, "orphan.jpg", age=5 * HOUR)
    put(exports, "report.csv", age=3 * DAY)
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(owner_role)))
    try:
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        for grant in documented_grants():
            conn.execute(grant.rstrip(";").replace(" TO retention", f" TO {role}"))
        for grant in POLICY_GRANTS:
            conn.execute(sql.SQL(grant).format(role=sql.Identifier(role)))
        if owner:
            for table in ["events", *sorted(partitions_of(conn))]:
                conn.execute(
                    sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                        sql.Identifier(table), sql.Identifier(owner_role)
                    )
                )
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner_role), sql.Identifier(role))
            )
        before = partitions_of(conn)
        config = tmp_path / "retention.toml"
        config.write_text(
            '[jobs]\nsucceeded = "1d"\n\n[orphans]\nenabled = true\n\n'
            + tables_toml(records_policy(media), partitioned_policy(parts))
            + f'\n[[directories]]\nroot = "{exports}"\nage = "2d"\n'
        )
        job = seed_job(conn, status="succeeded", finished_ago=dt.timedelta(days=3))
        params = libpq.conninfo_to_dict(database)
        params["user"] = role
        as_role = libpq.make_conninfo(**params)

        dry = run_cli("--config", str(config), "plan", "--json", database=as_role)
        assert dry.returncode == 0, dry.stderr
        result = run_cli("--config", str(config), "run", "--json", database=as_role)
        assert result.returncode == 0, result.stderr
        assert "permission denied" not in result.stderr
        summary = json.loads(result.stdout)

        records = summary["tables"]["app.events"]
        assert records["deleted"] == 3
        assert records["child_rows"] == 3 * 3
        assert records["files_queued"] == 3 * 4
        assert ids(conn, "app.events") == {young}
        assert {f"events/{e}.jpg" for e in old}.isdisjoint(files_on_disk(media))
        events = summary["tables"]["events"]
        assert "partition_errors" not in events
        assert events["deleted"] + events["partition_rows"] > 0
        cutoff = conn.execute("SELECT now() - interval '132 hours'").fetchone()[0]
        left = conn.execute("SELECT count(*) FROM events WHERE created_at < %s", (cutoff,))
        assert left.fetchone()[0] == 0
        if owner:
            assert events["partitions_dropped"] >= 4
            assert partitions_of(conn) < before
        else:
            assert events["partitions_dropped"] == 0
            assert partitions_of(conn) == before
            assert any("does not own" in w for w in events["warnings"])
        assert summary["files"]["failed"] == 0
        assert summary["files"]["pending"] == 0
        assert summary["directories"]["roots"][str(exports)]["deleted"] == 1
        assert not (media / "orphan.jpg").exists()
        assert job not in job_ids(conn)

        status = run_cli("--config", str(config), "status", "--json", database=as_role)
        assert status.returncode == 0, status.stderr
        metrics = run_cli("--config", str(config), "metrics", database=as_role)
        assert metrics.returncode == 0, metrics.stderr
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(owner_role))
        )
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner_role)))
