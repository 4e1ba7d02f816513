"""Application storages whose files are deleted through their own API (a Django storage: local,
S3 through django-storages, a custom one), by key.

An integration registers each storage a file column names (`FileColumn.storage`): the Django app
registers `django:app_label.Model.field` for every FileField of a model policy whose storage is
not a local FileSystemStorage. The registry lives in the process that runs retention (a worker,
`./manage.py retention`): an outbox entry of a storage that is not registered here stays pending,
with an error saying where to run retention, and is never refused for it.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Storage(Protocol):
    """What the drain needs of a storage (Django's Storage API)."""

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def delete(self, name: str) -> None: ...


_lock = threading.Lock()
_registered: dict[str, Storage] = {}


def register(key: str, storage: Storage) -> None:
    with _lock:
        _registered[key] = storage


def get(key: str) -> Storage | None:
    with _lock:
        return _registered.get(key)


def unsafe_name(name: str) -> str | None:
    """Why a stored name is not one the drain hands to a storage (None: it is one). A storage
    resolves names under its own location; a name that is absolute, empty, has a NUL, an empty,
    `.` or `..` segment, or ends with '/' could reach something else, whatever the storage does
    with it."""
    if not name or "\x00" in name:
        return f"{name!r} is not a file name"
    if name.startswith("/") or name.startswith("\\"):
        return f"{name!r} is absolute: a storage's names are relative to it"
    parts = name.replace("\\", "/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"{name!r} has an empty, '.' or '..' segment: never deleted"
    return None
