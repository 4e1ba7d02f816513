"""Applies Procrastinate's schema when it is missing, then every pending file of migrations/.

Idempotent and safe when several processes run it at once (an advisory lock, taken by polling so
that a concurrent `CREATE INDEX CONCURRENTLY` never waits on a waiting session). A migration whose
first line is `-- retention: no-transaction` runs statement by statement outside a transaction.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from importlib import resources

import psycopg
from procrastinate import schema as procrastinate_schema

from retention import errors
from retention.pg import queries

logger = logging.getLogger(__name__)

NO_TRANSACTION = "-- retention: no-transaction"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
LOCK_POLL_SECONDS = 0.2
# The job prune checks row versions against the statement's snapshot (pg_current_snapshot,
# pg_visible_in_snapshot): PostgreSQL 13 and later.
MIN_SERVER_VERSION = 130000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Migration:
    name: str
    text: str

    @property
    def transactional(self) -> bool:
        return not self.text.lstrip().startswith(NO_TRANSACTION)

    def statements(self) -> list[str]:
        """Statements of a no-transaction migration: split where a line ends with `;`."""
        out: list[str] = []
        current: list[str] = []
        for line in self.text.splitlines():
            if not current and (not line.strip() or line.lstrip().startswith("--")):
                continue
            current.append(line)
            if line.rstrip().endswith(";"):
                out.append("\n".join(current))
                current = []
        if current:
            out.append("\n".join(current))
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report:
    procrastinate_schema_applied: bool
    applied: list[str]
    already: list[str]


def available() -> list[Migration]:
    folder = resources.files("retention.pg").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if _NAME.match(entry.name):
            found.append(Migration(name=entry.name, text=entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.name)


def check_server(version: int) -> None:
    """Refuse a server older than MIN_SERVER_VERSION (`version` as in server_version_num)."""
    if version < MIN_SERVER_VERSION:
        raise errors.DatabaseError(
            f"PostgreSQL {MIN_SERVER_VERSION // 10000} or later is required; this server "
            f"is {_version_text(version)}: upgrade it, or point DATABASE_URL at a newer one"
        )


def _version_text(version: int) -> str:
    major, minor = divmod(version, 10000)
    return f"{major}.{minor}" if major >= 10 else f"{major}.{minor // 100}.{minor % 100}"


def pending(conn: psycopg.Connection) -> list[str]:
    """Names of migrations not applied yet (all of them when the ledger table is missing)."""
    check_server(conn.info.server_version)
    exists = conn.execute("SELECT to_regclass('retention_migrations') IS NOT NULL").fetchone()
    applied = (
        {row[0] for row in conn.execute(queries.text("applied_migrations"))}
        if exists and exists[0]
        else set()
    )
    return [m.name for m in available() if m.name not in applied]


def _lock(conn: psycopg.Connection) -> None:
    while True:
        row = conn.execute(queries.text("migration_try_lock")).fetchone()
        if row and row[0]:
            return
        time.sleep(LOCK_POLL_SECONDS)


def apply(conn: psycopg.Connection) -> Report:
    """Bring the database up to date. `conn` must be in autocommit mode."""
    conn.autocommit = True
    check_server(conn.info.server_version)
    _lock(conn)
    try:
        schema_applied = _ensure_procrastinate_schema(conn)
        conn.execute(queries.text("create_migrations_table"))
        done = {row[0] for row in conn.execute(queries.text("applied_migrations"))}
        applied: list[str] = []
        for migration in available():
            if migration.name in done:
                continue
            _apply_one(conn, migration)
            applied.append(migration.name)
            logger.info(
                "applied migration %s",
                migration.name,
                extra={"action": "migration_applied", "migration": migration.name},
            )
        return Report(
            procrastinate_schema_applied=schema_applied, applied=applied, already=sorted(done)
        )
    finally:
        conn.execute(queries.text("migration_unlock"))


def _ensure_procrastinate_schema(conn: psycopg.Connection) -> bool:
    row = conn.execute(queries.text("procrastinate_schema_present")).fetchone()
    if row and row[0]:
        return False
    with conn.transaction():
        conn.execute(procrastinate_schema.SchemaManager.get_schema())
    logger.info("applied the Procrastinate schema", extra={"action": "procrastinate_schema"})
    return True


def _apply_one(conn: psycopg.Connection, migration: Migration) -> None:
    record = queries.text("record_migration")
    if migration.transactional:
        with conn.transaction():
            conn.execute(migration.text)
            conn.execute(record, {"name": migration.name})
        return
    for statement in migration.statements():
        conn.execute(statement)
    conn.execute(record, {"name": migration.name})
