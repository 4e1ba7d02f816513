"""Path safety: every path we delete is resolved inside a configured root, never outside."""

from __future__ import annotations

import os
from pathlib import Path


class UnsafePath(ValueError):
    """A path that resolves outside its root, or a root that must never be swept."""


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
