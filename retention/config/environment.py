"""The environment's part of the settings: every `RETENTION_*` variable must name a setting (or
be one of NON_SETTING_VARIABLES), and a value's variable is found again to report it."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping

from pydantic import AliasChoices, BaseModel
from pydantic_settings import SettingsError

from retention import errors

ENV_PREFIX = "RETENTION_"
# Environment variables of ours that start with RETENTION_ and are not read by the settings
# model as a key: every other RETENTION_* variable must name a setting (a typo is an error).
NON_SETTING_VARIABLES: frozenset[str] = frozenset(
    {"RETENTION_APP", "RETENTION_CONFIG", "RETENTION_HOME", "RETENTION_HTTP"}
)


def names(model: type[BaseModel]) -> dict[str, tuple[str, ...]]:
    """Every environment variable a setting is read from (upper case), with its key path."""
    names: dict[str, tuple[str, ...]] = {}

    def walk(model: type[BaseModel], prefix: str, path: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            alias = field.validation_alias
            if not path and isinstance(alias, AliasChoices):
                for choice in alias.choices:
                    names[str(choice).upper()] = (name,)
                continue
            env = f"{prefix}{name.upper()}"
            names[env] = (*path, name)
            nested = field.annotation
            if isinstance(nested, type) and issubclass(nested, BaseModel):
                walk(nested, env + "__", (*path, name))

    walk(model, ENV_PREFIX, ())
    return names


def check(environ: Mapping[str, str], model: type[BaseModel]) -> None:
    """Raise ConfigError for any RETENTION_* variable that is neither a setting nor one of
    NON_SETTING_VARIABLES, naming it and the closest valid name (its value is never shown)."""
    known = names(model)
    unknown = [
        name
        for name in environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known
        and name.upper() not in NON_SETTING_VARIABLES
    ]
    if not unknown:
        return
    valid = sorted({*known, *NON_SETTING_VARIABLES})
    lines = ["invalid configuration:"]
    for name in sorted(unknown):
        hint = _closest(name.upper(), valid)
        suggestion = f"did you mean {hint}? " if hint else ""
        lines.append(
            f"  - environment variable {name}: not a setting ({suggestion}unset it, or see the "
            "configuration reference for the RETENTION_* names)"
        )
    raise errors.ConfigError("\n".join(lines))


def _closest(name: str, valid: list[str]) -> str | None:
    """The valid name closest to `name`, compared without the common RETENTION_ prefix."""

    def bare(candidate: str) -> str:
        return candidate.removeprefix(ENV_PREFIX)

    if bare(name) in valid:  # RETENTION_DATABASE_URL, RETENTION_RETENTION_DAYS
        return bare(name)
    by_bare: dict[str, str] = {}
    for candidate in valid:
        by_bare.setdefault(bare(candidate), candidate)
    match = difflib.get_close_matches(bare(name), list(by_bare), n=1, cutoff=0.6)
    return by_bare[match[0]] if match else None


def variable(
    path: tuple[str, ...], environ: Mapping[str, str], model: type[BaseModel]
) -> str | None:
    """The set environment variable a value at `path` (field names) came from, if any."""
    upper = {name.upper(): name for name in environ}
    known = names(model)
    for size in range(len(path), 0, -1):
        for env, key_path in known.items():
            if key_path == path[:size] and env in upper:
                return upper[env]
    return None


def unparsable(exc: SettingsError, model: type[BaseModel]) -> str:
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else None
    found = variable((field,), os.environ, model) if field else None
    if found is None:
        return f"invalid configuration: {exc}"
    return (
        f"invalid configuration:\n  - {field}: not valid JSON (from environment variable "
        f"{found}; a table or list is given as JSON in an environment variable, e.g. "
        f'{ENV_PREFIX}JOBS=\'{{"succeeded": "1d"}}\')'
    )
