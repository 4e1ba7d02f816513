"""`retention run` as a plain role holding exactly the grants the README documents."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid

import psycopg
from psycopg import conninfo as libpq
from psycopg import sql

from tests.helpers import ROOT, dsn_for, job_ids, run_cli, seed_job

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


def test_run_works_with_only_the_documented_grants(conn, database):
    role = f"retention_plain_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        conn.execute(sql.SQL("REVOKE ALL ON SCHEMA public FROM PUBLIC"))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(sql.Identifier(role)))
        for grant in documented_grants():
            conn.execute(grant.rstrip(";").replace(" TO retention", f" TO {role}"))
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
        assert summary["deleted"] == 1 and summary["lock_backoffs"] == 1
        assert job_ids(conn) == {keep, held}
        assert old not in job_ids(conn)
        status = run_cli("status", "--json", database=as_role)
        assert status.returncode == 0, status.stderr
        with psycopg.connect(as_role) as plain:
            try:
                plain.execute("CREATE TABLE should_fail (id int)")
                raise AssertionError("the plain role could create a table")
            except psycopg.errors.InsufficientPrivilege:
                pass
    finally:
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
