"""Which directories may be storage or sweep roots: absolute, never a system or home directory."""

from __future__ import annotations

import os
from pathlib import Path

_FORBIDDEN_ROOTS = {
    Path("/"),
    Path("/bin"),
    Path("/boot"),
    Path("/dev"),
    Path("/etc"),
    Path("/lib"),
    Path("/proc"),
    Path("/root"),
    Path("/sbin"),
    Path("/sys"),
    Path("/usr"),
    Path("/var"),
    Path("/home"),
    Path("/tmp"),
}


def _home() -> Path | None:
    try:
        return Path(os.path.realpath(Path.home()))
    except (KeyError, RuntimeError):
        return None


def normalise(root: Path) -> Path:
    """`root` made absolute-normal: `..` and `.` folded, and a leading `//` (which POSIX paths
    may keep) made `/`."""
    text = os.path.normpath(root)
    return Path("/" + text.lstrip("/")) if text.startswith("/") else Path(text)


def problem(root: Path) -> str | None:
    """Why `root` may not be a root (as written, and once symlinks are resolved), or None."""
    if not root.is_absolute():
        return f"root {str(root)!r} must be an absolute path"
    normal = normalise(root)
    real = Path(os.path.realpath(normal))
    home = _home()
    for candidate in dict.fromkeys((normal, real)):
        shown = repr(str(root))
        if candidate != normal:
            shown += f" (resolving to {str(candidate)!r})"
        if candidate in _FORBIDDEN_ROOTS or candidate.parent == Path("/home"):
            return (
                f"root {shown} is a system or home directory: give the directory that holds "
                "only the application's files (e.g. /var/lib/app/thumbnails)"
            )
        if home is not None and home.is_relative_to(candidate):
            return (
                f"root {shown} holds the home directory {str(home)!r}: give the directory that "
                "holds only the application's files"
            )
    return None


def check_root(root: Path) -> Path:
    """The one root check, for every kind of root (file columns, sweeps, orphans): absolute,
    and neither as written nor once its symlinks are resolved a system directory, a home
    directory or a directory holding the home directory. Returns the root normalised."""
    found = problem(root)
    if found:
        raise ValueError(found)
    return normalise(root)
