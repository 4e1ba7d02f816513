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


def check_root(root: Path) -> Path:
    """A storage root must be absolute and must not be a system directory or a home directory."""
    if not root.is_absolute():
        raise ValueError(f"root {str(root)!r} must be an absolute path")
    normal = Path(os.path.normpath(root))
    if normal in _FORBIDDEN_ROOTS or normal == Path.home() or normal.parent == Path("/home"):
        raise ValueError(
            f"root {str(root)!r} is a system or home directory: give the directory that holds "
            "only the application's files (e.g. /var/lib/app/thumbnails)"
        )
    return normal
