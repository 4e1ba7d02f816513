"""procrastinate-retention: data-retention jobs for applications on the Procrastinate task queue.

`retention.app` (the ready-made Procrastinate app) and `retention.blueprint(settings)` are built
on first access: importing this package connects to nothing and starts nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "blueprint"]


def blueprint(settings: Any = None) -> Any:
    from retention import tasks

    return tasks.blueprint(settings)


def __getattr__(name: str) -> Any:
    if name == "app":
        from retention import application

        built = application.build()
        globals()["app"] = built
        return built
    raise AttributeError(f"module 'retention' has no attribute {name!r}")
