"""Path safety: every path we delete is resolved inside a configured root, never outside."""

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


class UnsafePath(ValueError):
    """A path that resolves outside its root, or a root that must never be swept."""


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


def resolve_inside(root: Path, stored: str) -> Path:
    """The real path of `stored` (relative to root, or absolute) if it lies strictly inside the
    real root; raise UnsafePath otherwise (.., absolute paths elsewhere, symlinks leading out)."""
    if not stored or "\x00" in stored:
        raise UnsafePath(f"{stored!r} is not a file path")
    real_root = Path(os.path.realpath(root))
    candidate = Path(stored)
    if not candidate.is_absolute():
        candidate = Path(root) / candidate
    parent = Path(os.path.realpath(candidate.parent))
    resolved = parent / candidate.name
    if candidate.name in ("", ".", "..") or not parent.is_relative_to(real_root):
        raise UnsafePath(f"{stored!r} resolves outside its root {str(root)!r}")
    if resolved == real_root:
        raise UnsafePath(f"{stored!r} is the root {str(root)!r} itself")
    return resolved
