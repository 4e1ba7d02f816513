"""The processes around the embedded server: who uses it (the data directory's
`.handle_pids.json`), whether its postmaster runs, stopping it, and the lock pgserver takes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from retention.errors import EmbeddedServerError

logger = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 60.0
_CLOCK_SLACK_SECONDS = 2.0


@dataclass(frozen=True)
class Postmaster:
    pid: int
    port: int | None
    socket_dir: Path | None


def prune_dead_pids(path: Path) -> None:
    pids = read_pids(path)
    if pids is None:
        logger.warning(
            "reset an unreadable list of embedded server users",
            extra={"action": "embedded_pids_reset", "path": str(path)},
        )
        write_pids(path, [])
        return
    if not pids:
        return
    since = path.stat().st_mtime
    live = [pid for pid in pids if is_live_user(pid, since)]
    if len(live) == len(pids):
        return
    write_pids(path, live)
    logger.warning(
        "dropped processes that died without releasing the embedded server",
        extra={"action": "embedded_pids_pruned", "pids": sorted(set(pids) - set(live))},
    )


def read_pids(path: Path) -> list[int] | None:
    try:
        values = json.loads(path.read_text() or "[]")
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return None
    if not isinstance(values, list) or not all(isinstance(value, int) for value in values):
        return None
    return values


def write_pids(path: Path, pids: list[int]) -> None:
    if pids or path.exists():
        path.write_text(json.dumps(pids))


def is_live_user(pid: int, registered_before: float) -> bool:
    """Whether ``pid`` runs and is not a later process that reuses a dead user's number."""
    import psutil

    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return bool(process.create_time() <= registered_before + _CLOCK_SLACK_SECONDS)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


# --- the running server --------------------------------------------------------------------------


def read_postmaster(pgdata: Path) -> Postmaster | None:
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
    socket_dir = Path(lines[4].strip()) if len(lines) > 4 and lines[4].strip() else None
    return Postmaster(pid, port, socket_dir)


def running_postmaster(pgdata: Path) -> Postmaster | None:
    postmaster = read_postmaster(pgdata)
    return postmaster if postmaster is not None and alive(postmaster) else None


def alive(postmaster: Postmaster) -> bool:
    """Whether the postmaster runs (a zombie or another program reusing its pid does not count)."""
    try:
        import psutil
    except ImportError:
        return signalable(postmaster.pid)
    try:
        process = psutil.Process(postmaster.pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.name() == "postgres"
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def signalable(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shut_down(pid: int, pgdata: Path) -> None:
    """Fast shutdown (what ``pg_ctl stop`` does), then immediate shutdown if that hangs."""
    for signum, timeout in ((signal.SIGINT, STOP_TIMEOUT_SECONDS), (signal.SIGQUIT, 10.0)):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            raise EmbeddedServerError(
                f"the embedded server in {pgdata} (pid {pid}) belongs to another user; "
                "stop it as that user"
            ) from exc
        if wait_for_exit(pid, pgdata, timeout):
            return
    raise EmbeddedServerError(
        f"the embedded server in {pgdata} (pid {pid}) did not stop; "
        f"see its log {pgdata / 'log'}, and end process {pid} yourself"
    )


def wait_for_exit(pid: int, pgdata: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(Postmaster(pid, None, None)):
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """The lock pgserver takes (POSIX ``lockf`` on the same file, as fasteners does)."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(handle, fcntl.LOCK_UN)
