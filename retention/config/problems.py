"""What a bad setting is reported as: one line per problem, the key, where its value came from (an
argument, an environment variable, the TOML file, the default), what is wrong, and the value
unless it may be a secret."""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    AliasChoices,
    BaseModel,
    ValidationError,
)

from retention.config import dsn, durations, environment

_SECRET_NAME = re.compile(
    r"pass|pwd|secret|token|url|uri|dsn|conninfo|credential|auth|cert|private", re.IGNORECASE
)
HIDDEN = "(value hidden)"


def _may_be_secret(name: str, value: Any) -> bool:
    """Whether a value must not be echoed: its key's name suggests a secret, or it (or anything
    in it) looks like a connection string."""
    if _SECRET_NAME.search(name):
        return True
    if isinstance(value, dict):
        return any(_may_be_secret(str(k), v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_may_be_secret("", item) for item in value)
    return isinstance(value, str) and dsn.looks_like_conninfo(value)


def describe(
    exc: ValidationError,
    path: Path | None,
    model: type[BaseModel],
    overrides: Mapping[str, Any] | None = None,
    *,
    given: tuple[dict[str, Any], str] | None = None,
) -> str:
    """One line per problem of loading `model`: the key, where its value came from, what is
    wrong, the value. `given` is settings given as a mapping instead of the TOML file, and what
    to call them (e.g. Django's RETENTION setting)."""
    toml_data = _read_toml(path)
    where = f"the file {path}" if path is not None else None
    if given is not None:
        toml_data, where = given
    lines = ["invalid configuration:"]
    for error in exc.errors():
        loc = _field_path(error["loc"], model)
        origin = _origin(loc, overrides or {}, os.environ, toml_data, where, model)
        lines.append(f"  - {_problem(error, loc, origin, model)}")
    return "\n".join(lines)


def _read_toml(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (OSError, ValueError):
        return None


def _field_path(loc: tuple[int | str, ...], model: type[BaseModel]) -> tuple[int | str, ...]:
    """The error's location with an alias (RETENTION_DAYS, DATABASE_URL) as its field name."""
    if not loc or not isinstance(loc[0], str):
        return loc
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices) and loc[0].lower() in (
            str(choice).lower() for choice in alias.choices
        ):
            return (name, *loc[1:])
    return loc


def _contains(data: Any, loc: tuple[int | str, ...]) -> bool:
    for part in loc:
        if isinstance(data, dict) and isinstance(part, str):
            matches = [key for key in data if str(key).lower() == part.lower()]
            if not matches:
                return False
            data = data[matches[0]]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _aliases(loc: tuple[int | str, ...], model: type[BaseModel]) -> list[tuple[int | str, ...]]:
    """The location under each name its top-level key may be written as."""
    forms = [loc]
    field = model.model_fields.get(str(loc[0])) if loc else None
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        forms += [(str(choice), *loc[1:]) for choice in field.validation_alias.choices]
    return forms


def _origin(
    loc: tuple[int | str, ...],
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    toml_data: dict[str, Any] | None,
    where: str | None,
    model: type[BaseModel],
) -> str | None:
    """Where the value at `loc` came from, strongest source first (as the settings merge them):
    an argument, an environment variable, the TOML file, else the default (None: no key)."""
    if not loc:
        return None
    if any(_contains(dict(overrides), form) for form in _aliases(loc, model)):
        return "an argument"
    names = tuple(part for part in _until_index(loc) if isinstance(part, str))
    variable = environment.variable(names, environ, model)
    if variable is not None:
        return f"environment variable {variable}"
    if toml_data is not None and any(_contains(toml_data, form) for form in _aliases(loc, model)):
        return where
    return "the default"


def _until_index(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """An environment variable names a key path down to the first list (a list is JSON)."""
    for position, part in enumerate(loc):
        if isinstance(part, int):
            return loc[:position]
    return loc


def _key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _problem(
    error: Any, loc: tuple[int | str, ...], origin: str | None, model: type[BaseModel]
) -> str:
    """`key: what is wrong (got value, from where)`; a value that may be a secret is hidden."""
    key = _key(loc)
    source = f"from {origin}" if origin else ""
    value = error.get("input")
    name = str(loc[-1]) if loc else ""
    secret = _may_be_secret(key if error["type"] != "extra_forbidden" else name, value)
    if error["type"] == "extra_forbidden":
        hint = "check the spelling; see the configuration reference"
        if loc[:1] == ("jobs",):
            hint = (
                "job ages are set per final status: succeeded, failed, cancelled, aborted; "
                "todo and doing jobs are never deleted"
            )
        close = _closest_key(loc, model)
        if close:
            hint = f"did you mean {close}? {hint}"
        shown = HIDDEN if secret else repr(value)
        details = "; ".join(part for part in (f"got {name} = {shown}", hint, source) if part)
        return f"{key}: unknown key ({details})"
    message = re.sub(r"^(Value|Assertion) error, ", "", error["msg"])
    if secret:
        message = _without(message, value)
        shown = "" if HIDDEN in message else HIDDEN
    elif isinstance(value, dict):
        shown = ""
    elif isinstance(value, dt.timedelta):
        shown = f"got {durations.format_duration(value)}"
    else:
        shown = f"got {value!r}"
    details = ", ".join(part for part in (shown, source) if part)
    return f"{key}: {dsn.redact(message)}" + (f" ({details})" if details else "")


def _without(message: str, value: Any) -> str:
    """The message with any echo of a secret value replaced."""
    if isinstance(value, str) and value:
        message = message.replace(repr(value), HIDDEN).replace(value, HIDDEN)
    return message


def _closest_key(loc: tuple[int | str, ...], model: type[BaseModel]) -> str | None:
    """For an unknown key, the closest key of its table (e.g. database_url for databse_url)."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        nested = _model_of(field.annotation)
        if nested is None:
            return None
        model = nested
    match = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return match[0] if match else None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None
