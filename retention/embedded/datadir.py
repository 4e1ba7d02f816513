"""The embedded server's directories: a data directory PostgreSQL can use (its path, its major
version, its owner) and private directories around it."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import uuid
from pathlib import Path

from retention.errors import EmbeddedServerError

logger = logging.getLogger(__name__)

MAX_SOCKET_PATH_BYTES = 107
_LONGEST_SOCKET_NAME = ".s.PGSQL.65535"
_SAFE_PATH_PUNCTUATION = frozenset("/._-+@:=")


PG_MAJOR = 18
ROOT_HOME = Path("/var/lib/procrastinate-retention")
_RUN_DIR = "run"
_LOCK_FILE = "server.lock"
_BINARIES_DIR = f"pgsql{PG_MAJOR}"


def run_dir(home: Path) -> Path:
    return home / _RUN_DIR


def lock_path(home: Path) -> Path:
    return run_dir(home) / _LOCK_FILE


def home_mode() -> int:
    # As root, the server runs as the system user "pgserver" (with root's group id), which must
    # traverse the home.
    return 0o711 if is_root() else 0o700


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def blocked_ancestor(path: Path) -> Path | None:
    """The first directory from / down to ``path`` (included) that other users may not enter."""
    for directory in (*reversed(path.parents), path):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return directory
    return None


def private_binaries(home: Path, bin_path: Path) -> Path:
    """The PostgreSQL installation of ``bin_path`` (its bin, lib and share) under ``home``, for a
    system user that cannot reach the original: hard links to the original files where they are
    already readable by others (else copies), in directories others may enter; made once."""
    target = home / _BINARIES_DIR
    if (target / "bin" / "postgres").is_file():
        return target / "bin"
    source = bin_path.parent
    partial = home / f".{_BINARIES_DIR}-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(
            source,
            partial,
            symlinks=True,
            ignore=shutil.ignore_patterns("include"),
            copy_function=_link_or_copy,
        )
        for folder, _, _ in os.walk(partial):
            os.chmod(folder, 0o755)
        os.replace(partial, target)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not (target / "bin" / "postgres").is_file():
            raise
    logger.info(
        "linked the embedded server's binaries into its home (others cannot reach them)",
        extra={"action": "embedded_binaries", "source": str(source), "path": str(target)},
    )
    return target / "bin"


def _link_or_copy(source: str, destination: str) -> None:
    mode = os.stat(source).st_mode
    readable = mode & stat.S_IROTH and (mode & stat.S_IXOTH or not mode & stat.S_IXUSR)
    if readable:
        try:
            os.link(source, destination)
            return
        except OSError:
            pass
    shutil.copy2(source, destination)
    extra = stat.S_IRGRP | stat.S_IROTH
    if mode & stat.S_IXUSR:
        extra |= stat.S_IXGRP | stat.S_IXOTH
    os.chmod(destination, (mode & 0o777) | extra)


def validate_data_dir_path(pgdata: Path) -> None:
    text = str(pgdata)
    unsafe = next((char for char in text if not is_safe_path_char(char)), None)
    if unsafe is not None:
        what = "a space" if unsafe == " " else f"the character {unsafe!r}"
        raise EmbeddedServerError(
            f"the embedded server's data directory {text} contains {what}, which PostgreSQL's "
            "start command cannot handle; set RETENTION_HOME to a directory whose path has only "
            "letters, digits and / . _ - + @ : = (for example ~/.retention)"
        )
    socket_path = os.fsencode(str(pgdata / _LONGEST_SOCKET_NAME))
    if len(socket_path) > MAX_SOCKET_PATH_BYTES:
        home_budget = MAX_SOCKET_PATH_BYTES - len(f"/{pgdata.name}/{_LONGEST_SOCKET_NAME}")
        raise EmbeddedServerError(
            f"the embedded server's socket path {os.fsdecode(socket_path)} would be "
            f"{len(socket_path)} bytes, more than the {MAX_SOCKET_PATH_BYTES} a unix socket path "
            f"may have; set RETENTION_HOME to a shorter directory (at most {home_budget} bytes, "
            "for example ~/.retention)"
        )


def is_safe_path_char(char: str) -> bool:
    return char.isalnum() or char in _SAFE_PATH_PUNCTUATION


def check_data_dir_major(pgdata: Path) -> None:
    version_file = pgdata / "PG_VERSION"
    if not version_file.exists():
        return
    try:
        found: int | str = int(version_file.read_text().strip().split(".")[0])
    except (OSError, ValueError):
        found = "an unknown version"
    if found == PG_MAJOR:
        return
    found_text = f"PostgreSQL {found}" if isinstance(found, int) else found
    raise EmbeddedServerError(
        f"the embedded data directory {pgdata} was initialised by {found_text}, but this version "
        f"of procrastinate-retention runs PostgreSQL {PG_MAJOR}; set RETENTION_HOME to another "
        f"directory, or dump the data with {found_text}'s pg_dump and then remove {pgdata}"
    )


def prepare_directories(home: Path, pgdata: Path) -> None:
    make_private_dir(home, home_mode())
    make_private_dir(run_dir(home), 0o700)
    if not pgdata.exists():
        warn_about_other_majors(home)
        pgdata.mkdir(mode=0o700)
    set_mode(pgdata, 0o700)


def make_private_dir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    owner = path.stat().st_uid
    if hasattr(os, "geteuid") and owner != os.geteuid():
        raise EmbeddedServerError(
            f"{path} belongs to user id {owner}, not to you (user id {os.geteuid()}); "
            "set RETENTION_HOME to a directory of your own"
        )
    set_mode(path, mode)


def set_mode(path: Path, mode: int) -> None:
    current = path.stat().st_mode & 0o777
    if current == mode:
        return
    path.chmod(mode)
    logger.info(
        "made a directory of the embedded server private",
        extra={
            "action": "embedded_chmod",
            "path": str(path),
            "mode": oct(mode),
            "was": oct(current),
        },
    )


def check_data_dir_owner(pgdata: Path) -> None:
    if is_root() or not hasattr(os, "geteuid"):
        return
    owner = pgdata.stat().st_uid
    if owner != os.geteuid():
        raise EmbeddedServerError(
            f"the embedded data directory {pgdata} belongs to user id {owner} (was it created "
            "while running as root?), not to you; run as that user again, or set RETENTION_HOME "
            "to another directory"
        )


def warn_about_other_majors(home: Path) -> None:
    for other in sorted(home.glob("pg*")):
        if other.name != f"pg{PG_MAJOR}" and (other / "PG_VERSION").exists():
            logger.warning(
                "found an embedded data directory of another PostgreSQL major; it is not used",
                extra={"action": "embedded_other_major", "data_dir": str(other)},
            )
