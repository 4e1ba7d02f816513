"""Applies Procrastinate's schema when it is missing, then every pending file of migrations/.

Idempotent and safe when several processes run it at once (an advisory lock, taken by polling so
that a concurrent `CREATE INDEX CONCURRENTLY` never waits on a waiting session). A migration whose
first line is `-- retention: no-transaction` runs statement by statement outside a transaction.
Every wait is bounded (`wait`): for the advisory lock, and for the locks a statement needs (an
index built concurrently waits for every transaction that might use it); past the bound, the
error names the sessions it waited for. A database whose encoding is SQL_ASCII is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import time
from importlib import resources

import psycopg
from procrastinate import schema as procrastinate_schema

from retention import errors
from retention.pg import database, queries

logger = logging.getLogger(__name__)

NO_TRANSACTION = "-- retention: no-transaction"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
LOCK_POLL_SECONDS = 0.2
DEFAULT_WAIT = dt.timedelta(minutes=5)
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


def check_encoding(conn: psycopg.Connection) -> None:
    """Refuse a SQL_ASCII database: it stores bytes in no known encoding, so neither our
    statements nor the file paths of its rows can be read back reliably."""
    row = conn.execute(queries.text("database_encoding")).fetchone()
    if row is not None and row[1]:
        name = bytes(row[0]).decode("utf-8", "backslashreplace")
        raise errors.DatabaseError(
            f"the database {name!r} uses the SQL_ASCII encoding, which procrastinate-retention "
            "does not support: create a UTF8 database (CREATE DATABASE ... ENCODING 'UTF8' "
            "TEMPLATE template0) and point DATABASE_URL at it"
        )


def check(conn: psycopg.Connection) -> None:
    """The server version and the database's encoding, as every command needs them."""
    check_server(conn.info.server_version)
    check_encoding(conn)


def check_replication_role(conn: psycopg.Connection) -> None:
    """Refuse a session whose session_replication_role is not `origin` (set for the role, the
    database, or in the connection's options): there, triggers and foreign-key actions do not
    fire, so a delete would leave what they delete behind (a job's events and periodic defers,
    a cascading child's rows) and skip what an application's trigger does."""
    row = conn.execute(queries.text("session_replication_role")).fetchone()
    if row is not None and row[0] != "origin":
        raise errors.DatabaseError(
            f"session_replication_role is {row[0]!r} in retention's session, so PostgreSQL "
            "fires no trigger and no foreign-key action there: deleting would leave jobs' events "
            "and cascading rows behind. Reset it for the retention role (ALTER ROLE <role> RESET "
            "session_replication_role, or ALTER DATABASE ... RESET it) or drop it from the "
            "connection's options; nothing was deleted"
        )


def _version_text(version: int) -> str:
    major, minor = divmod(version, 10000)
    return f"{major}.{minor}" if major >= 10 else f"{major}.{minor // 100}.{minor % 100}"


def pending(conn: psycopg.Connection) -> list[str]:
    """Names of migrations not applied yet (all of them when the ledger table is missing)."""
    check(conn)
    exists = conn.execute("SELECT to_regclass('retention_migrations') IS NOT NULL").fetchone()
    applied = (
        {row[0] for row in conn.execute(queries.text("applied_migrations"))}
        if exists and exists[0]
        else set()
    )
    return [m.name for m in available() if m.name not in applied]


def ensure(location: database.Location) -> None:
    """Refuse a database that is not migrated, with the message every command and task gives;
    the embedded database is brought up to date instead."""
    with database.connect(location) as conn:
        missing = pending(conn)
        if not missing:
            return
        if location.source == "embedded":
            apply(conn)
            return
    raise errors.DatabaseError(
        f"the database is not migrated (pending: {', '.join(missing)}): run `retention migrate` "
        "(or `retention --app MODULE.ATTR migrate` for your Procrastinate app's database) once, "
        "with a role that may create tables and indexes"
    )


def _lock(conn: psycopg.Connection, wait: dt.timedelta) -> None:
    deadline = time.monotonic() + wait.total_seconds()
    announced = False
    while True:
        row = conn.execute(queries.text("migration_try_lock")).fetchone()
        if row and row[0]:
            return
        if not announced:
            logger.warning(
                "waiting for another retention migrate to finish (up to %s s)",
                int(wait.total_seconds()),
                extra={"action": "migrate_waiting"},
            )
            announced = True
        if time.monotonic() >= deadline:
            holders = ", ".join(
                str(pid) for (pid,) in conn.execute(queries.text("migration_lock_holders"))
            )
            raise errors.DatabaseError(
                f"another retention migrate (session {holders or '?'}) still holds the migration "
                f"lock after {int(wait.total_seconds())} s: let it finish, or stop it, then run "
                "`retention migrate` again"
            )
        time.sleep(LOCK_POLL_SECONDS)


def apply(conn: psycopg.Connection, *, wait: dt.timedelta = DEFAULT_WAIT) -> Report:
    """Bring the database up to date. `conn` must be in autocommit mode. Waits at most `wait`
    for the migration lock, and as long again for the locks of any one statement."""
    conn.autocommit = True
    check(conn)
    _lock(conn, wait)
    milliseconds = max(1, int(wait.total_seconds() * 1000))
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{milliseconds}ms",))
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
        conn.execute("RESET lock_timeout")
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
        if "CONCURRENTLY" in statement.upper():
            logger.info(
                "%s: building an index concurrently waits for the transactions open on its table",
                migration.name,
                extra={"action": "migration_waits", "migration": migration.name},
            )
        try:
            conn.execute(statement)
        except psycopg.errors.LockNotAvailable:
            raise errors.DatabaseError(
                f"migration {migration.name} waited too long for other sessions: "
                f"{_blockers(conn)}; let them finish (or end them), then run `retention migrate` "
                "again (a half-built index is dropped and rebuilt)"
            ) from None
    conn.execute(record, {"name": migration.name})


def _blockers(conn: psycopg.Connection) -> str:
    """The sessions of this database with a transaction open, oldest first: those an index
    built concurrently waits for."""
    rows = conn.execute(queries.text("open_transactions")).fetchall()
    if not rows:
        return "no session holds a transaction open now"
    return "; ".join(
        f"session {pid} ({application or 'no application name'}, {state}, transaction open "
        f"since {started:%Y-%m-%d %H:%M:%S}): {query!r}"
        for pid, application, state, started, query in rows
    )
