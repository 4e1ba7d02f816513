"""The only place that touches Procrastinate's private attributes.

Procrastinate has no public way to change a connector's connection parameters after it is built,
or to ask whether its pool is open without an exception; these functions do it through private
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


def _version() -> str:
    try:
        return metadata.version("procrastinate")
    except metadata.PackageNotFoundError:
        return "(unknown version)"
