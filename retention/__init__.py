"""procrastinate-retention: data-retention jobs for applications on the Procrastinate task queue.

`retention.app` (the ready-made Procrastinate app) is built on first access, and
`retention.blueprint(settings)` when called: importing this package connects to nothing, starts
nothing and reads no settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import procrastinate

    from retention.config import settings
    from retention.interfaces import tasks

__all__ = ["app", "blueprint"]


def blueprint(
    settings: settings.Settings | None = None, *, database: str | None = None
) -> tasks.RetentionBlueprint:
    """The retention tasks, to add to your app under the "retention" namespace. Without
    settings, they are loaded from RETENTION_* variables and the TOML file. They use the
    database of the app's connector; `database` (a libpq URL or conninfo) names it when the
    connector cannot tell."""
    from retention.interfaces import tasks

    return tasks.blueprint(settings, database=database)


def __getattr__(name: str) -> Any:
    if name == "app":
        from retention.interfaces import application

        built: procrastinate.App = application.build()
        globals()["app"] = built
        return built
    raise AttributeError(f"module 'retention' has no attribute {name!r}")
