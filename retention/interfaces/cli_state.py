"""What every `retention` command shares: the global options, the settings they give, where the
database is, and the check that it is migrated."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import psycopg
import typer

from retention import errors
from retention.config import settings as settings_mod
from retention.engine import ledger
from retention.pg import database, migrate


class State:
    config: str | None = None
    database_url: str | None = None
    verbose: bool = False

    def settings(self) -> settings_mod.Settings:
        overrides: dict[str, Any] = {}
        if self.database_url:
            overrides["database_url"] = self.database_url
        return settings_mod.load(self.config, **overrides)


state = State()

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (else RETENTION_CONFIG, ./retention.toml)."
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="libpq URL of the database (else DATABASE_URL, PG*, embedded)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")
]


def location(settings: settings_mod.Settings) -> database.Location:
    return database.locate(settings)


def ensure_migrated(location: database.Location) -> None:
    """The embedded database is brought up to date; any other must have run `retention migrate`."""
    with database.connect(location) as conn:
        missing = migrate.pending(conn)
        if not missing:
            return
        if location.source == "embedded":
            migrate.apply(conn)
            return
    raise errors.DatabaseError(
        f"the database is not migrated (pending: {', '.join(missing)}): run `retention migrate` "
        "first, with a role that may create tables and indexes"
    )


@contextlib.contextmanager
def ledger_connection(location: database.Location) -> Iterator[psycopg.Connection]:
    """A connection to a migrated database whose ledger no longer shows killed runs as running."""
    ensure_migrated(location)
    with database.connect(location) as conn:
        ledger.abandon_dead(conn)
        yield conn
