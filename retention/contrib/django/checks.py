"""`./manage.py check` for retention: every problem of the settings as a message a user can act
on, never a traceback.

- retention.E001: the settings are invalid (the message of `retention config`, key by key);
- retention.E002: a policy names an unknown model;
- retention.E003: a policy names an unknown field, or one of the wrong kind;
- retention.E004: a FileField's storage cannot delete files (no `delete` or `exists` of its own);
- retention.E005: "procrastinate.contrib.django" is not in INSTALLED_APPS;
- retention.W001: a policy's timestamp field has no index starting with it;
- retention.W003: with the orphan sweep on, a FileField whose files live where the sweep looks is
  named by no policy (its files would look orphaned);
- retention.W002: the retention tasks were already added to Procrastinate's app (by a
  PROCRASTINATE_ON_APP_READY hook): this app adds them by itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.core import checks

from retention.contrib.django import models_policies
from retention.contrib.django import settings as django_settings

INVALID = "retention.E001"
NO_PROCRASTINATE = "retention.E005"
NO_INDEX = "retention.W001"
ADDED_TWICE = "retention.W002"
UNCONFIGURED_FILES = "retention.W003"


def check_retention(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    # The app's config, as Django holds it (retention.contrib.django.apps.RetentionConfig): what
    # its ready() loaded, and whether the tasks were already added by someone else.
    config = apps.get_app_config("retention")
    found: list[Any] = []
    if not apps.is_installed(django_settings.PROCRASTINATE_APP):
        found.append(
            checks.Error(
                "retention.contrib.django needs Procrastinate's Django app",
                hint=f'add "{django_settings.PROCRASTINATE_APP}" to INSTALLED_APPS',
                id=NO_PROCRASTINATE,
            )
        )
    loaded = getattr(config, "loaded", None)
    if loaded is None:
        return found
    problems = loaded.resolver.problems
    lines = [_plain(line) for line in (loaded.error or "").splitlines()[1:]]
    for problem in problems:
        # The settings' line for it names its key and where it came from.
        shown = next((line for line in lines if str(problem) in line), str(problem))
        found.append(checks.Error(shown, hint=_hint(problem.check_id), id=problem.check_id))
    if loaded.error is not None:
        rest = [line for line in lines if not any(str(p) in line for p in problems)]
        if not lines:  # not a list of keys: one message
            rest = [loaded.error]
        if rest:
            found.append(
                checks.Error(
                    "; ".join(rest),
                    hint="fix the RETENTION setting (or the file RETENTION_CONFIG names, or the "
                    "RETENTION_* variable); see the configuration reference",
                    id=INVALID,
                )
            )
    for model, field in loaded.resolver.timestamps:
        if not models_policies.indexed_first(model, field):
            found.append(
                checks.Warning(
                    f"{models_policies.label(model)}.{field}, the timestamp of a retention "
                    "policy, has no index starting with it: every delete batch scans the table",
                    hint=f"add db_index=True to {model.__name__}.{field}, or "
                    f'models.Index(fields=["{field}"]) to its Meta.indexes',
                    obj=model,
                    id=NO_INDEX,
                )
            )
    if loaded.settings is not None:
        found += _unconfigured_files(loaded.settings)
    if getattr(config, "added_elsewhere", False):
        found.append(
            checks.Warning(
                "the retention tasks were already in Procrastinate's app (added by a "
                "PROCRASTINATE_ON_APP_READY hook?): retention.contrib.django adds them by itself",
                hint="remove the add_tasks_from(retention.blueprint(...)) of your hook",
                id=ADDED_TWICE,
            )
        )
    return found


def _unconfigured_files(settings: Any) -> list[Any]:
    """With the orphan sweep on: the FileFields of models whose files live under a swept root
    (a local storage's location inside it, or the same storage object) that no file column of the
    settings names. Their files would look orphaned to the sweep."""
    from pathlib import Path

    from django.core.files import storage as storage_mod
    from django.db import models

    from retention.files import orphans, references, storages

    if not settings.orphans.enabled:
        return []
    swept = [Path(os.path.realpath(root)) for root in orphans.roots(settings)]
    refs = references.references(settings)
    named = {(ref.table.split(".")[-1], ref.column) for ref in refs}
    swept_storages = [
        storages.get(key)
        for key in (str(ref.root)[len("storage:") :] for ref in refs if ref.storage and ref.delete)
    ]
    found: list[Any] = []
    for model in apps.get_models():
        for field in model._meta.get_fields():
            if not isinstance(field, models.FileField):
                continue
            if (model._meta.db_table, field.column) in named:
                continue
            storage = field.storage
            inside = False
            if isinstance(storage, storage_mod.FileSystemStorage):
                location = Path(os.path.realpath(storage.location))
                inside = any(
                    location.is_relative_to(root) or root.is_relative_to(location) for root in swept
                )
            elif any(storage is other for other in swept_storages):
                inside = True
            if inside:
                found.append(
                    checks.Warning(
                        f"{models_policies.label(model)}.{field.name} keeps its files where the "
                        "orphan sweep looks, but no retention policy names it: the sweep would "
                        "delete its files as orphans",
                        hint=f"name it in a policy of {models_policies.label(model)} (with "
                        f'"enabled": False and "files": [{{"field": "{field.name}", "delete": '
                        "False}] it only keeps its files referenced), or give the field another "
                        "storage, or turn the orphan sweep off",
                        obj=model,
                        id=UNCONFIGURED_FILES,
                    )
                )
    return found


def _plain(line: str) -> str:
    return line.strip().removeprefix("- ")


def _hint(check_id: str) -> str:
    if check_id == models_policies.UNKNOWN_MODEL:
        return "name a model as app_label.ModelName (e.g. shop.Photo)"
    if check_id == models_policies.UNKNOWN_FIELD:
        return "name a field of the model (its name, not its column)"
    return "see the README's Django section"
