"""The ready-made Procrastinate app: `procrastinate --app=retention.app worker`.

Its connector finds the database only when the app is opened (DATABASE_URL, PG* variables, then
the embedded server), so importing it connects to nothing and starts nothing.
"""

from __future__ import annotations

from typing import Any

import procrastinate

from retention import db, tasks
from retention import settings as settings_mod


class LazyConnector(procrastinate.PsycopgConnector):
    """A PsycopgConnector whose conninfo is resolved from the settings when first used."""

    def __init__(self, settings: settings_mod.Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.location: db.Location | None = None

    def resolve(self) -> db.Location:
        if self.location is None:
            self.location = db.locate(self.settings)
            self._pool_args["conninfo"] = self.location.conninfo
        return self.location

    async def open_async(self, pool: Any = None) -> None:
        if pool is None:
            self.resolve()
        await super().open_async(pool)

    def get_sync_connector(self) -> Any:
        self.resolve()
        return super().get_sync_connector()


def build(settings: settings_mod.Settings | None = None) -> procrastinate.App:
    settings = settings or settings_mod.load()
    app = procrastinate.App(
        connector=LazyConnector(settings),
        worker_defaults={"delete_jobs": settings.delete_jobs},
    )
    app.add_tasks_from(tasks.blueprint(settings), namespace="retention")
    return app
