"""The ready-made Procrastinate app: `procrastinate --app=retention.app worker`.

Its connector (`connectors.LazyConnector`) finds the database only when the app is opened
(DATABASE_URL, PG* variables, then the embedded server: the only app whose tasks may fall back
on them), so importing it connects to nothing and starts nothing. Its workers listen
to the retention queue only (jobs of other tasks are not theirs to run), delete finished jobs as
`delete_jobs` says, and on SIGTERM stop the retention run in progress between two batches.
"""

from __future__ import annotations

import procrastinate
from procrastinate import app as app_mod
from procrastinate import jobs as jobs_mod

from retention.config import settings as settings_mod
from retention.interfaces import connectors, tasks
from retention.pg import database

AppConfigError = tasks.AppConfigError
LazyConnector = connectors.LazyConnector


def worker_defaults(settings: settings_mod.Settings) -> app_mod.WorkerOptions:
    return {
        "queues": [settings.queue],
        "delete_jobs": jobs_mod.DeleteJobCondition(settings.delete_jobs),
        "shutdown_graceful_timeout": 0.0,
    }


def build(
    settings: settings_mod.Settings | None = None, location: database.Location | None = None
) -> procrastinate.App:
    settings = settings or tasks.load_settings()
    app = procrastinate.App(
        connector=LazyConnector(settings, location),
        worker_defaults=worker_defaults(settings),
    )
    app.add_tasks_from(tasks.blueprint(settings), namespace=tasks.NAMESPACE)
    return app
