"""Table policies written with Django models, resolved through the app registry into the plain
policies the engine runs (table names, column names, storage roots).

    {"model": "shop.Photo", "timestamp": "taken_at", "age": "30d",
     "files": [{"field": "image"}], "children": [{"model": "shop.Tag"}]}

becomes `table = "shop_photo"`, `timestamp` the field's column, `files` the FileField's column
and its storage's root, a child's table and the column of its ForeignKey to the parent (found
from the model's meta, or named with `field`, or given as `column`). A problem is a
`ModelProblem` (a ValueError, so that the settings report it with its key and where it came
from), carrying the system-check id `./manage.py check` shows it under.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.core.files import storage as storage_mod
from django.db import models

from retention.files import storages as retention_storages

UNKNOWN_MODEL = "retention.E002"
UNKNOWN_FIELD = "retention.E003"
CANNOT_DELETE = "retention.E004"


class ModelProblem(ValueError):
    """A policy names a model or a field that is not there, or not of a usable kind."""

    def __init__(self, check_id: str, message: str) -> None:
        super().__init__(message)
        self.check_id = check_id


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResolvedFile:
    """A FileField of a policy, as resolved: where its names are stored and which storage
    holds the files."""

    model: str
    field: str
    table: str
    column: str
    root: Path | None
    storage: storage_mod.Storage


@dataclasses.dataclass(kw_only=True)
class Resolver:
    """Resolves the policies of one settings load; keeps what it found and what was wrong."""

    files: list[ResolvedFile] = dataclasses.field(default_factory=list)
    timestamps: list[tuple[type[models.Model], str]] = dataclasses.field(default_factory=list)
    problems: list[ModelProblem] = dataclasses.field(default_factory=list)

    def __call__(self, policy: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._policy(policy)
        except ModelProblem as problem:
            self.problems.append(problem)
            raise

    def _policy(self, policy: dict[str, Any]) -> dict[str, Any]:
        out = dict(policy)
        model = None
        if "model" in policy:
            if "table" in policy:
                raise ModelProblem(
                    UNKNOWN_MODEL,
                    f"give `model` ({policy['model']!r}) or `table` ({policy['table']!r}), not both",
                )
            model = get_model(out.pop("model"))
            out["table"] = model._meta.db_table
            if isinstance(policy.get("timestamp"), str):
                out["timestamp"] = timestamp_column(model, policy["timestamp"])
                self.timestamps.append((model, policy["timestamp"]))
            if isinstance(policy.get("key"), str):
                out["key"] = field_of(model, policy["key"]).column
            if isinstance(policy.get("where"), dict):
                out["where"] = {_column(model, k): v for k, v in policy["where"].items()}
        table = out.get("table")
        if "files" in policy:
            out["files"] = [self._file(model, entry) for entry in _list(policy["files"])]
        if "children" in policy:
            out["children"] = [
                self._child(model, table, child) for child in _list(policy["children"])
            ]
        return out

    def _child(self, parent: type[models.Model] | None, parent_table: Any, child: Any) -> Any:
        if not isinstance(child, dict):
            return child
        out = dict(child)
        model = None
        if "model" in child:
            if "table" in child:
                raise ModelProblem(
                    UNKNOWN_MODEL,
                    f"child: give `model` ({child['model']!r}) or `table`, not both",
                )
            model = get_model(out.pop("model"))
            out["table"] = model._meta.db_table
            field = out.pop("field", None)
            if field is not None and "column" in child:
                raise ModelProblem(
                    UNKNOWN_FIELD, f"child {label(model)}: give `field` or `column`, not both"
                )
            if field is not None:
                out["column"] = foreign_key(model, str(field), parent_table).column
            elif "column" not in child:
                out["column"] = find_foreign_key(model, parent, parent_table).column
        if "files" in child:
            out["files"] = [self._file(model, entry) for entry in _list(child["files"])]
        return out

    def _file(self, model: type[models.Model] | None, entry: Any) -> Any:
        if not isinstance(entry, dict) or "field" not in entry:
            return entry
        if model is None:
            raise ModelProblem(
                UNKNOWN_FIELD,
                f"file field {entry['field']!r}: `field` names a FileField of the policy's "
                "`model`; with `table`, give `column` and `root` instead",
            )
        if "column" in entry or "root" in entry:
            raise ModelProblem(
                UNKNOWN_FIELD,
                f"file field {label(model)}.{entry['field']}: give `field`, or `column` and "
                "`root`, not both",
            )
        out = dict(entry)
        name = str(out.pop("field"))
        column, root, storage = resolve_file_field(model, name)
        self.files.append(
            ResolvedFile(
                model=label(model),
                field=name,
                table=model._meta.db_table,
                column=column,
                root=root,
                storage=storage,
            )
        )
        out["column"] = column
        if root is None and out.get("delete", True):
            missing = [
                method
                for method in ("delete", "exists")
                if getattr(type(storage), method, None) is getattr(storage_mod.Storage, method)
            ]
            if missing:
                raise ModelProblem(
                    CANNOT_DELETE,
                    f"{label(model)}.{name}: its storage {type(storage).__module__}."
                    f"{type(storage).__qualname__} does not implement {' and '.join(missing)}: "
                    "retention cannot delete its files; implement them, or keep the files with "
                    "`delete = false`",
                )
        if root is None:
            # Not a local directory: the files go through the storage's own API, by the key the
            # outbox names it with (registered in this process, where retention runs).
            key = storage_key(model, name)
            retention_storages.register(key, storage)
            out["storage"] = key
        else:
            out["root"] = str(root)
        return out


def storage_key(model: type[models.Model], field: str) -> str:
    """The key a FileField's storage is registered under: `django:app_label.Model.field`."""
    return f"django:{label(model)}.{field}"


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def label(model: type[models.Model]) -> str:
    return f"{model._meta.app_label}.{model.__name__}"


def get_model(name: Any) -> type[models.Model]:
    """The model `app_label.ModelName`, or a ModelProblem naming the closest ones."""
    text = str(name)
    known = [label(m) for m in apps.get_models(include_auto_created=False)]
    try:
        found: type[models.Model] = apps.get_model(text, require_ready=False)
        return found
    except (LookupError, ValueError):
        close = difflib.get_close_matches(text, known, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ModelProblem(
            UNKNOWN_MODEL,
            f"unknown model {text!r}: {hint}give it as app_label.ModelName of an app in "
            "INSTALLED_APPS",
        ) from None


def field_of(model: type[models.Model], name: str) -> Any:
    """The concrete field `name` of `model`, or a ModelProblem listing its fields."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        names = [f.name for f in model._meta.concrete_fields]
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ModelProblem(
            UNKNOWN_FIELD,
            f"{label(model)} has no field {name!r}: {hint}its fields are {', '.join(names)}",
        ) from None
    if not getattr(field, "concrete", False) or getattr(field, "column", None) is None:
        raise ModelProblem(
            UNKNOWN_FIELD, f"{label(model)}.{name} is not a column of {model._meta.db_table}"
        )
    return field


def _column(model: type[models.Model], name: str) -> str:
    return str(field_of(model, name).column)


def timestamp_column(model: type[models.Model], name: str) -> str:
    field = field_of(model, name)
    if not isinstance(field, models.DateField):  # DateTimeField is a DateField
        raise ModelProblem(
            UNKNOWN_FIELD,
            f"{label(model)}.{name} is a {type(field).__name__}: the timestamp must be a "
            "DateTimeField or a DateField",
        )
    return str(field.column)


def foreign_key(model: type[models.Model], name: str, parent_table: Any) -> Any:
    field = field_of(model, name)
    if not isinstance(field, models.ForeignKey):
        raise ModelProblem(
            UNKNOWN_FIELD,
            f"{label(model)}.{name} is a {type(field).__name__}, not a ForeignKey to "
            f"{parent_table}",
        )
    return field


def find_foreign_key(
    model: type[models.Model], parent: type[models.Model] | None, parent_table: Any
) -> Any:
    """The one ForeignKey of `model` to the parent (its model, or its table)."""
    found = [
        field
        for field in model._meta.concrete_fields
        if isinstance(field, models.ForeignKey)
        and field.related_model is not None
        and (field.related_model is parent or field.related_model._meta.db_table == parent_table)
    ]
    if len(found) == 1:
        return found[0]
    parent_name = label(parent) if parent is not None else str(parent_table)
    if not found:
        raise ModelProblem(
            UNKNOWN_FIELD,
            f"{label(model)} has no ForeignKey to {parent_name}: name its column with `column`",
        )
    raise ModelProblem(
        UNKNOWN_FIELD,
        f"{label(model)} has several ForeignKeys to {parent_name} "
        f"({', '.join(f.name for f in found)}): name the one to follow with `field`",
    )


def resolve_file_field(
    model: type[models.Model], field_name: str
) -> tuple[str, Path | None, storage_mod.Storage]:
    """The column holding a FileField's names, the local root they are relative to (None when
    the field's storage is not a FileSystemStorage), and the storage itself."""
    field = field_of(model, field_name)
    if not isinstance(field, models.FileField):
        raise ModelProblem(
            UNKNOWN_FIELD,
            f"{label(model)}.{field_name} is a {type(field).__name__}, not a FileField or "
            "ImageField",
        )
    storage = field.storage
    root = Path(storage.location) if isinstance(storage, storage_mod.FileSystemStorage) else None
    return str(field.column), root, storage


def indexed_first(model: type[models.Model], field_name: str) -> bool:
    """Whether an index (or a unique constraint) of the model starts with the field."""
    field = model._meta.get_field(field_name)
    if getattr(field, "db_index", False) or getattr(field, "unique", False):
        return True
    if getattr(field, "primary_key", False):
        return True
    meta = model._meta
    for index in meta.indexes:
        first = index.fields[0] if index.fields else None
        if first is not None and first.lstrip("-") == field_name:
            return True
    for constraint in meta.constraints:
        fields = getattr(constraint, "fields", ())
        if isinstance(constraint, models.UniqueConstraint) and fields and fields[0] == field_name:
            return True
    return any(group and group[0] == field_name for group in meta.unique_together)
