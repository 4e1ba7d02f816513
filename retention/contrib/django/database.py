"""Django's database for retention: the location of an alias (as Procrastinate's connector
reads it), and our migrations applied to it."""

from __future__ import annotations

import psycopg

from retention import errors
from retention.interfaces import connectors
from retention.pg import database as pg_database
from retention.pg import migrate as pg_migrate
from retention.pg import queries


def location(alias: str) -> pg_database.Location:
    """The database of a DATABASES alias, with the parameters Procrastinate's worker uses."""
    from procrastinate.contrib.django import django_connector

    conninfo = connectors.connector_conninfo(django_connector.DjangoConnector(alias=alias))
    return pg_database.Location(conninfo=conninfo or "", source=f"Django's database {alias!r}")


def migrate(alias: str) -> pg_migrate.Report:
    """Apply our SQL migrations to the database of `alias`. Procrastinate's tables must be there
    (from its Django migrations): applying its schema here would break them."""
    with pg_database.connect(location(alias)) as conn:
        require_procrastinate_schema(conn, alias)
        return pg_migrate.apply(conn)


def require_procrastinate_schema(conn: psycopg.Connection, alias: str) -> None:
    row = conn.execute(queries.text("procrastinate_schema_present")).fetchone()
    if not (row and row[0]):
        raise errors.DatabaseError(
            f"Procrastinate's tables are missing from Django's database {alias!r}: run "
            "`./manage.py migrate` (it applies Procrastinate's migrations, then ours)"
        )
