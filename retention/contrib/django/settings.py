"""Our settings in a Django project: the `RETENTION` setting (a dict with the keys of the TOML
file), else a TOML file (the `RETENTION_CONFIG` setting, else as outside Django: the
RETENTION_CONFIG variable, ./retention.toml), with RETENTION_* variables on top, validated by
`retention.config.settings`; policies naming models resolved through the app registry."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from django.conf import settings as django_settings

from retention import errors
from retention.config import policies
from retention.config import settings as settings_mod
from retention.contrib.django import models_policies

SETTING = "RETENTION"
# The app the retention tasks are added to (INSTALLED_APPS).
PROCRASTINATE_APP = "procrastinate.contrib.django"
CONFIG_SETTING = "RETENTION_CONFIG"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Loaded:
    """The settings, or the error that kept them from loading, and what the models gave."""

    settings: settings_mod.Settings | None
    error: str | None
    resolver: models_policies.Resolver


def load() -> Loaded:
    """Load the settings now (never raises on a bad setting: the error is kept for the checks)."""
    resolver = models_policies.Resolver()
    try:
        found = _load(resolver)
    except errors.ConfigError as exc:
        return Loaded(settings=None, error=str(exc), resolver=resolver)
    return Loaded(settings=found, error=None, resolver=resolver)


def _load(resolver: models_policies.Resolver) -> settings_mod.Settings:
    data: Any = getattr(django_settings, SETTING, None)
    config: Any = getattr(django_settings, CONFIG_SETTING, None)
    with policies.resolving_models(resolver):
        if data is None:
            if config is not None and not isinstance(config, str | os.PathLike):
                raise errors.ConfigError(
                    f"the Django setting {CONFIG_SETTING} must be the path of a TOML file "
                    f"(got a {type(config).__name__})"
                )
            return settings_mod.load(config)
        if not isinstance(data, dict):
            raise errors.ConfigError(
                f"the Django setting {SETTING} must be a dict with the keys of retention.toml "
                f"(got a {type(data).__name__})"
            )
        other = config or os.environ.get("RETENTION_CONFIG")
        if other:
            raise errors.ConfigError(
                f"both the Django setting {SETTING} and {CONFIG_SETTING} ({str(other)!r}) give "
                "the settings: keep one"
            )
        return settings_mod.load(data=data, data_origin=f"the Django setting {SETTING}")
