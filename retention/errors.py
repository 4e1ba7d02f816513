"""Errors a user can act on, each with the exit code the CLI uses for it."""

from __future__ import annotations


class RetentionError(Exception):
    """Base class: the message says what is wrong and how to fix it."""

    exit_code = 1


class ConfigError(RetentionError):
    """Invalid settings, arguments or policies: nothing ran."""

    exit_code = 2


class DatabaseError(RetentionError):
    """The database could not be reached or is not in the expected shape."""

    exit_code = 2


class DatabaseUnreachable(DatabaseError):
    """The database server could not be reached or refused us: connection refused, unknown host,
    failed authentication, no such database. Nothing ran."""

    exit_code = 3


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server could not be used."""


class RunFailed(RetentionError):
    """A retention run started and failed."""

    exit_code = 1
