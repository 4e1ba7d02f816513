"""What every `retention` command shares: the global options, the settings they give, where the
database is, and the check that it is migrated.

With `--app MODULE.ATTR` (or RETENTION_APP), as with `procrastinate --app`, the database is the
one of that Procrastinate app's connector, and the settings those of the retention blueprint
added to it (when it has one, and no --config names others).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from retention import errors

if TYPE_CHECKING:
    # Imported where used: `retention --help` loads none of them.
    import procrastinate
    import psycopg

    from retention.config import settings as settings_mod
    from retention.interfaces import tasks
    from retention.pg import database

APP_VARIABLE = "RETENTION_APP"


class State:
    config: str | None = None
    database_url: str | None = None
    app_path: str | None = None
    verbose: bool = False
    _app: procrastinate.App | None = None

    def app_name(self) -> str | None:
        return self.app_path or os.environ.get(APP_VARIABLE) or None

    def app(self) -> procrastinate.App | None:
        """The Procrastinate app of --app / RETENTION_APP, imported once; None without one."""
        path = self.app_name()
        if path is None:
            return None
        if self._app is None:
            self._app = load_app(path)
        return self._app

    def settings(self) -> settings_mod.Settings:
        app = self.app()
        if app is not None and self.database_url:
            raise errors.ConfigError(
                f"--app {self.app_name()} and --database-url both name the database: give one"
            )
        found = blueprint_of(app) if app is not None else None
        if found is not None and not self.config:
            return found.settings
        from retention.config import settings as settings_mod

        overrides: dict[str, Any] = {}
        if self.database_url:
            overrides["database_url"] = self.database_url
        return settings_mod.load(self.config, **overrides)

    def location(self, settings: settings_mod.Settings, *, start: bool = True) -> database.Location:
        """The app's database with --app; else DATABASE_URL, PG* variables, the embedded server
        (started unless start=False)."""
        from retention.interfaces import connectors
        from retention.pg import database

        app = self.app()
        if app is None:
            return database.locate(settings, start=start)
        found = blueprint_of(app)
        return connectors.location_for_app(
            app,
            database_arg=found.database if found is not None else None,
            name=f"the app {self.app_name()}",
            start=start,
        )


def load_app(path: str) -> procrastinate.App:
    """Import MODULE and get ATTR, a procrastinate.App; a ConfigError (exit 2) saying what is
    wrong otherwise. The current directory is importable, as for `procrastinate --app`."""
    import procrastinate

    module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise errors.ConfigError(
            f"--app {path}: give the app as MODULE.ATTR (e.g. myapp.app), the dotted path of a "
            "procrastinate.App"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except errors.RetentionError:
        raise
    except ImportError as exc:
        raise errors.ConfigError(
            f"--app {path}: cannot import the module {module_name!r} ({exc}); run from the "
            "directory that holds it, or set PYTHONPATH"
        ) from None
    try:
        found = getattr(module, attribute)
    except AttributeError:
        raise errors.ConfigError(
            f"--app {path}: the module {module_name!r} has no attribute {attribute!r}"
        ) from None
    if not isinstance(found, procrastinate.App):
        raise errors.ConfigError(
            f"--app {path}: {attribute!r} is a {type(found).__name__}, not a procrastinate.App"
        )
    return found


def blueprint_of(app: procrastinate.App) -> tasks.RetentionBlueprint | None:
    """The retention blueprint added to `app`, found through its `retention:run` task."""
    from retention.interfaces import tasks

    return tasks.blueprint_of(app.tasks.get(f"{tasks.NAMESPACE}:run"))


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
AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="Your Procrastinate app, MODULE.ATTR (else RETENTION_APP): its database, and the "
        "settings of its retention blueprint.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")
]


def location(settings: settings_mod.Settings) -> database.Location:
    return state.location(settings)


def ensure_migrated(location: database.Location) -> None:
    """The embedded database is brought up to date; any other must have run `retention migrate`."""
    from retention.pg import migrate

    migrate.ensure(location)


@contextlib.contextmanager
def migrated_connection(location: database.Location) -> Iterator[psycopg.Connection]:
    """A connection to the database, once it is checked to be migrated."""
    from retention.pg import database

    ensure_migrated(location)
    with database.connect(location) as conn:
        yield conn


@contextlib.contextmanager
def ledger_connection(location: database.Location) -> Iterator[psycopg.Connection]:
    """A connection to a migrated database whose ledger no longer shows killed runs as running."""
    from retention.engine import ledger

    with migrated_connection(location) as conn:
        ledger.abandon_dead(conn)
        yield conn
