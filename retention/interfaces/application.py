"""The ready-made Procrastinate app: `procrastinate --app=retention.app worker`.

Its connector finds the database only when the app is opened (DATABASE_URL, PG* variables, then
the embedded server), so importing it connects to nothing and starts nothing. Its workers listen
to the retention queue only (jobs of other tasks are not theirs to run), delete finished jobs as
`delete_jobs` says, and on SIGTERM stop the retention run in progress between two batches.
"""

from __future__ import annotations

import argparse
from typing import Any

import procrastinate
from procrastinate import app as app_mod
from procrastinate import jobs as jobs_mod

from retention import errors
from retention.config import settings as settings_mod
from retention.interfaces import procrastinate_private, tasks
from retention.pg import database


class AppConfigError(errors.ConfigError, argparse.ArgumentTypeError):
    """Bad settings met while building the app; the procrastinate CLI shows it as a usage error
    of --app (exit code 2)."""


class LazyConnector(procrastinate.PsycopgConnector):
    """A PsycopgConnector whose conninfo is resolved from the settings when first used."""

    def __init__(
        self,
        settings: settings_mod.Settings,
        location: database.Location | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.location: database.Location | None = None
        if location is not None:
            self.use(location)

    def use(self, location: database.Location) -> None:
        self.location = location
        procrastinate_private.set_conninfo(self, location.conninfo)

    def resolve(self) -> database.Location:
        if self.location is None:
            self.use(database.locate(self.settings))
        assert self.location is not None
        return self.location

    async def open_async(self, pool: Any = None) -> None:
        if pool is None:
            self.resolve()
        await super().open_async(pool)

    def get_sync_connector(self) -> Any:
        self.resolve()
        return super().get_sync_connector()


def worker_defaults(settings: settings_mod.Settings) -> app_mod.WorkerOptions:
    return {
        "queues": [settings.queue],
        "delete_jobs": jobs_mod.DeleteJobCondition(settings.delete_jobs),
        "shutdown_graceful_timeout": 0.0,
    }


def build(
    settings: settings_mod.Settings | None = None, location: database.Location | None = None
) -> procrastinate.App:
    try:
        settings = settings or settings_mod.load()
    except errors.ConfigError as exc:
        raise AppConfigError(str(exc)) from None
    app = procrastinate.App(
        connector=LazyConnector(settings, location),
        worker_defaults=worker_defaults(settings),
    )
    app.add_tasks_from(tasks.blueprint(settings), namespace=tasks.NAMESPACE)
    return app
