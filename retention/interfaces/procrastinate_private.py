"""The only place that touches Procrastinate's private attributes.

Procrastinate has no public way to change a connector's connection parameters after it is built,
to read those of a connector not opened yet, or to register a blueprint's periodic task without
logging it under its name before the namespace; these functions do it through private
attributes. Each names the attribute it uses and the versions it was checked on;
tests/integration/test_private_apis.py fails, naming the attribute and the installed version,
when a Procrastinate release changes one of them.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any


def set_conninfo(connector: Any, conninfo: str) -> None:
    """Make a ``PsycopgConnector`` not opened yet connect to ``conninfo``.

    Sets ``conninfo`` in ``PsycopgConnector._pool_args``: the keyword arguments the connector
    passes to its pool factory when ``open_async`` creates the pool, and to the
    ``SyncPsycopgConnector`` that ``get_sync_connector`` builds before it is opened. Has no effect
    on a pool already created. Checked on Procrastinate 3.0 to 3.10.
    """
    pool_args = getattr(connector, "_pool_args", None)
    if not isinstance(pool_args, dict):
        raise RuntimeError(
            f"{type(connector).__name__}._pool_args is not a dict in procrastinate "
            f"{_version()}; procrastinate-retention cannot set the connector's conninfo"
        )
    pool_args["conninfo"] = conninfo


def async_pool(connector: Any) -> Any | None:
    """The psycopg ``AsyncConnectionPool`` of an opened ``PsycopgConnector``, else None.

    Reads ``PsycopgConnector._async_pool``: None until ``open_async`` (with or without a pool of
    the application's) and again after ``close_async``. None too for a connector without that
    attribute (another kind of connector). Checked on Procrastinate 3.0 to 3.10.
    """
    return getattr(connector, "_async_pool", None)


def pool_args(connector: Any) -> dict[str, Any] | None:
    """The arguments a connector not opened yet will build its pool with, else None.

    Reads ``_pool_args``: the keyword arguments of ``PsycopgConnector`` and
    ``SyncPsycopgConnector`` (``conninfo``, ``kwargs`` and the pool's own), and of the aiopg and
    psycopg2 connectors of ``procrastinate.contrib`` (``dsn`` and libpq keywords). None for a
    connector without that attribute. Checked on Procrastinate 3.0 to 3.10.
    """
    args = getattr(connector, "_pool_args", None)
    return args if isinstance(args, dict) else None


def sqlalchemy_dsn(connector: Any) -> str | None:
    """The ``dsn`` a ``SQLAlchemyPsycopg2Connector`` (procrastinate.contrib.sqlalchemy) was built
    with, else None.

    Reads ``_engine_dsn``, used by ``open`` to create the engine; an engine passed to ``open``
    is read through the public ``engine`` property instead. Checked on Procrastinate 3.10.
    """
    found = getattr(connector, "_engine_dsn", None)
    return found if isinstance(found, str) else None


def register_periodic(blueprint: Any, task: Any, cron: str) -> None:
    """Make ``task`` periodic on ``cron`` in ``blueprint``, as ``Blueprint.periodic`` does, without
    its log line: a blueprint's tasks have no namespace yet, so ``PeriodicRegistry.register_task``
    would log "Registering task run ..." at every import of the app, before the app logs it
    again under its real name (``retention:run``) in ``add_tasks_from``.

    Writes ``PeriodicRegistry.periodic_tasks`` (a dict keyed by ``(task name, periodic_id)``) with
    a ``procrastinate.periodic.PeriodicTask``, the empty periodic id and no configure kwargs, as
    ``Blueprint.periodic`` leaves them. Checked on Procrastinate 3.0 to 3.10.
    """
    from procrastinate import periodic

    registry = getattr(blueprint, "periodic_registry", None)
    tasks = getattr(registry, "periodic_tasks", None)
    if not isinstance(tasks, dict):
        raise RuntimeError(
            f"Blueprint.periodic_registry.periodic_tasks is not a dict in procrastinate "
            f"{_version()}; procrastinate-retention cannot register its periodic tasks"
        )
    tasks[(task.name, "")] = periodic.PeriodicTask(
        task=task, cron=cron, periodic_id="", configure_kwargs={}
    )


def _version() -> str:
    try:
        return metadata.version("procrastinate")
    except metadata.PackageNotFoundError:
        return "(unknown version)"
