"""procrastinate-retention as a Django app: add "retention.contrib.django" to INSTALLED_APPS,
next to "procrastinate.contrib.django" (see `apps`).

`retention.contrib.django.app` is Procrastinate's Django app once Django is ready: what
`./manage.py retention` passes to the `retention` CLI as its `--app`.
"""

from __future__ import annotations

from typing import Any

APP_PATH = "retention.contrib.django.app"


def __getattr__(name: str) -> Any:
    if name == "app":
        from procrastinate.contrib.django import procrastinate_app

        return procrastinate_app.current_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
