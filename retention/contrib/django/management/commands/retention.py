"""`./manage.py retention <command>`: the `retention` CLI on Django's database (the alias
Procrastinate uses) with the settings of the retention tasks this app added, as
`retention --app retention.contrib.django.app <command>`: the same commands, options and exit
codes. `worker` is Procrastinate's here (`./manage.py procrastinate worker`), and `demo` needs a
database of its own: both are refused."""

from __future__ import annotations

import sys
from typing import Any

from django import apps as django_apps
from django.core.management.base import BaseCommand

from retention import errors
from retention.config import dsn
from retention.contrib.django import APP_PATH, database
from retention.contrib.django import apps as retention_apps
from retention.interfaces import cli, console
from retention.pg import database as pg_database

REFUSED = {
    "worker": "run `./manage.py procrastinate worker`: it runs the retention tasks with yours",
    "demo": "the demo needs a database of its own: run `retention demo` outside the project",
}
GLOBAL_OPTIONS_WITH_VALUE = {"--config", "-c", "--database-url", "--app"}


class Command(BaseCommand):
    help = "The retention CLI (run, plan, purge, status, ...) on Django's database."

    def run_from_argv(self, argv: list[str]) -> None:
        """Every argument goes to the retention CLI as given; Django's parser sees none."""
        args = argv[2:]
        try:
            self._check(args)
        except errors.RetentionError as exc:
            console.err.print(f"error: {dsn.redact(str(exc))}", highlight=False, markup=False)
            sys.exit(exc.exit_code)
        saved = sys.argv
        sys.argv = [f"{saved[0]} retention", "--app", APP_PATH, *args]
        try:
            cli.main()
        finally:
            sys.argv = saved

    def handle(self, *args: Any, **options: Any) -> None:  # call_command(): unused
        self.run_from_argv(["manage.py", "retention", *args])

    def _check(self, args: list[str]) -> None:
        if any(arg == "--app" or arg.startswith("--app=") for arg in args):
            raise errors.ConfigError(
                "./manage.py retention works on this project's Procrastinate app: drop --app"
            )
        if any(arg == "--database-url" or arg.startswith("--database-url=") for arg in args):
            raise errors.ConfigError(
                "./manage.py retention works on Django's database (DATABASES, "
                "PROCRASTINATE_DATABASE_ALIAS): drop --database-url"
            )
        command = _subcommand(args)
        if command in REFUSED:
            raise errors.ConfigError(f"./manage.py retention {command}: {REFUSED[command]}")
        if command is None or "--help" in args:
            return
        config = retention_apps.config()
        if not django_apps.apps.is_installed(retention_apps.PROCRASTINATE_APP):
            raise errors.ConfigError(
                f'add "{retention_apps.PROCRASTINATE_APP}" to INSTALLED_APPS (see '
                "`./manage.py check`)"
            )
        if config.loaded is not None and config.loaded.error is not None:
            raise errors.ConfigError(config.loaded.error)
        if command == "migrate":
            from procrastinate.contrib.django import settings as procrastinate_settings

            # `retention migrate` would apply Procrastinate's schema, which its Django
            # migrations then fail to create.
            alias = procrastinate_settings.settings.DATABASE_ALIAS
            with pg_database.connect(database.location(alias)) as conn:
                database.require_procrastinate_schema(conn, alias)


def _subcommand(args: list[str]) -> str | None:
    """The first argument that is not a global option (nor its value)."""
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in GLOBAL_OPTIONS_WITH_VALUE:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg
    return None
