"""The sections of the settings that say what goes: `[jobs]` and its rules, `[[tables]]` with their
children and file columns, `[[directories]]`, `[orphans]`."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from retention.config import durations, globs, roots
from retention.config.fields import (
    WHERE_INT_RANGE,
    Age,
    Cron,
    Duration,
    Glob,
    Identifier,
    Model,
    _identifier,
)

FINAL_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled", "aborted")
UNFINISHED_STATUSES: tuple[str, ...] = ("todo", "doing")
DEFAULT_JOB_AGES: dict[str, dt.timedelta] = {
    "succeeded": dt.timedelta(days=3),
    "failed": dt.timedelta(days=30),
    "cancelled": dt.timedelta(days=7),
    "aborted": dt.timedelta(days=7),
}
DEFAULT_ORPHAN_GRACE = dt.timedelta(hours=1)

# A table policy written with Django models (`model`, file `field`s, children by `model`) is
# turned into a plain one by the resolver of `retention.contrib.django`, set while it loads the
# settings; anywhere else such a policy is refused.
ModelResolver = Callable[[dict[str, Any]], dict[str, Any]]
_model_resolver: contextvars.ContextVar[ModelResolver | None] = contextvars.ContextVar(
    "model_resolver", default=None
)


@contextlib.contextmanager
def resolving_models(resolver: ModelResolver) -> Iterator[None]:
    """While in the block, table policies naming Django models are resolved by `resolver`."""
    token = _model_resolver.set(resolver)
    try:
        yield
    finally:
        _model_resolver.reset(token)


def _names_models(policy: dict[str, Any]) -> bool:
    entries = [policy, *[c for c in policy.get("children") or [] if isinstance(c, dict)]]
    return any(
        "model" in entry
        or any(isinstance(f, dict) and "field" in f for f in entry.get("files") or [])
        for entry in entries
    )


def _count(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{value!r} is not a count: give a whole number of rows, 1 or more")
    return value


# How many rows `keep_last` keeps / `max_count` leaves: a whole number, at least 1.
Count = Annotated[int | None, BeforeValidator(_count)]


def _check_count(keep_last: int | None, max_count: int | None, per: list[str]) -> None:
    if keep_last is not None and max_count is not None:
        raise ValueError(
            "`keep_last` and `max_count` are both set: give one of them (keep_last protects the "
            "newest N rows from the age; max_count deletes beyond the newest N)"
        )
    if per and keep_last is None and max_count is None:
        raise ValueError("`per` groups the rows of `keep_last` or `max_count`: set one of them")
    if len(set(per)) != len(per):
        raise ValueError(f"`per` names a column twice: {per!r}")


class JobRule(Model):
    """An override for jobs whose queue and/or task match shell-style globs."""

    queue: Glob | None = Field(None, description="Glob on the job's queue name.")
    task: Glob | None = Field(None, description="Glob on the job's task name.")
    succeeded: Age = Field(None, description="Age of succeeded jobs this rule keeps.")
    failed: Age = Field(None, description="Age of failed jobs this rule keeps.")
    cancelled: Age = Field(None, description="Age of cancelled jobs this rule keeps.")
    aborted: Age = Field(None, description="Age of aborted jobs this rule keeps.")
    archive: bool = Field(
        False,
        description="Archive the jobs this prune deletes (with their events) before they go; "
        "any rule saying so archives every job of the prune. Needs [archive] root.",
    )
    keep_last: Count = Field(
        None,
        description="Never delete the newest N finished jobs of this rule (its queue/task "
        "globs and the statuses it sets; newest by finish time, ties by the finishing event's "
        "id; per queue and/or task with `per`), however old. Not with `max_count`.",
    )
    max_count: Count = Field(
        None,
        description="Delete every finished job of this rule beyond its newest N (as "
        "`keep_last` counts them), however young; jobs older than the rule's age go as well. "
        "Not with `keep_last`.",
    )
    per: list[Literal["queue", "task"]] = Field(
        default_factory=list,
        description='Count `keep_last` / `max_count` per queue and/or task: ["queue"], '
        '["task"] or ["queue", "task"]; without it, over all the jobs of the rule.',
    )

    @model_validator(mode="after")
    def _one_count(self) -> JobRule:
        _check_count(self.keep_last, self.max_count, list(self.per))
        return self

    @property
    def counted(self) -> tuple[str, int] | None:
        """The rule's count rule: ("keep_last" or "max_count", N), or None."""
        if self.keep_last is not None:
            return "keep_last", self.keep_last
        if self.max_count is not None:
            return "max_count", self.max_count
        return None

    @model_validator(mode="after")
    def _has_a_matcher(self) -> JobRule:
        if self.queue is None and self.task is None:
            raise ValueError("a rule needs `queue` and/or `task` (globs such as 'emails*')")
        if not set(FINAL_STATUSES) & self.model_fields_set:
            raise ValueError(
                "a rule needs at least one age: succeeded, failed, cancelled or aborted"
            )
        return self

    def age(self, status: str) -> tuple[bool, dt.timedelta | None]:
        """Whether this rule sets an age for `status`, and that age (None: forever)."""
        return status in self.model_fields_set, getattr(self, status)


class JobsPolicy(Model):
    """How long finished Procrastinate jobs are kept, by final status. When the section names any
    status, a status left out, or set to "forever", is kept forever; when it names none (no [jobs]
    section, or only `schedule`, `enabled` or `rules`): succeeded 3d, failed 30d, cancelled 7d,
    aborted 7d. An age (here and in the rules) is a duration longer than zero and at most 100
    years (36500d), or "forever"."""

    @model_validator(mode="before")
    @classmethod
    def _defaults_unless_a_status_is_named(cls, data: Any) -> Any:
        if isinstance(data, dict) and not any(status in data for status in FINAL_STATUSES):
            return {**DEFAULT_JOB_AGES, **data}
        return data

    enabled: bool = Field(True, description="Whether `retention run` prunes jobs.")
    schedule: Cron | None = Field(
        None, description="Cron of the job pruning task; default: the global schedule."
    )
    succeeded: Age = Field(None, description="How long succeeded jobs are kept.")
    failed: Age = Field(None, description="How long failed jobs are kept.")
    cancelled: Age = Field(None, description="How long cancelled jobs are kept.")
    aborted: Age = Field(None, description="How long aborted jobs are kept.")
    rules: list[JobRule] = Field(
        default_factory=list,
        description="Overrides by queue and/or task glob; the last matching rule wins per status.",
    )
    archive: bool = Field(
        False,
        description="Write each batch of deleted jobs (with their events) to the archive before "
        "it commits ([archive]); restored by `retention archive restore`.",
    )

    @property
    def archived(self) -> bool:
        """Whether the prune archives what it deletes: the policy or any rule says so."""
        return self.archive or any(rule.archive for rule in self.rules)

    def age_for(self, status: str, queue: str, task: str) -> dt.timedelta | None:
        """The reference semantics, in Python: what the SQL in jobs.py computes."""
        age: dt.timedelta | None = getattr(self, status)
        for rule in self.rules:
            sets, rule_age = rule.age(status)
            if sets and globs.matches(rule.queue, queue) and globs.matches(rule.task, task):
                age = rule_age
        return age


DEFAULT_JOBS = JobsPolicy()


STORAGE_PREFIX = "storage:"


class FileColumn(Model):
    """A column holding paths of files, relative to `root` (or absolute inside it), or names of
    files in an application's storage (`storage`, set by an integration such as the Django app:
    its files are deleted through the storage's own API)."""

    column: Identifier = Field(
        description="Text column holding the file path; NULL or empty means no file."
    )
    root: Path | None = Field(
        None,
        description="Storage root the paths live under (relative to it, or absolute inside it); "
        "a path resolving outside (.., symlinks) is refused, never deleted.",
    )
    storage: str | None = Field(
        None,
        description="Instead of `root`: the key of a storage an integration registered (the "
        "Django app registers `django:app_label.Model.field` for a FileField whose storage is "
        "not a local FileSystemStorage); its files are deleted through the storage's API.",
    )
    delete: bool = Field(
        True,
        description="Delete the files with their rows (queued in the file outbox in the rows' "
        "transaction, unlinked after commit); false keeps them on disk.",
    )

    @field_validator("root")
    @classmethod
    def _safe_root(cls, value: Path | None) -> Path | None:
        return None if value is None else roots.check_root(value)

    @field_validator("storage")
    @classmethod
    def _storage_key(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\x00" in value or "/" in value):
            raise ValueError("a storage key is a non-empty name without '/' or NUL")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> FileColumn:
        if (self.root is None) == (self.storage is None):
            raise ValueError(
                "give the file column a `root` (a local directory) or a `storage` (a storage an "
                "integration registered), exactly one of them"
            )
        return self

    @property
    def location(self) -> str:
        """Where the outbox says the file lives: the root, or `storage:<key>`."""
        return str(self.root) if self.root is not None else STORAGE_PREFIX + str(self.storage)


class ChildTable(Model):
    """Rows of another table that reference the policy's rows and go before them."""

    table: Identifier = Field(description="Child table, schema-qualified allowed.")
    column: Identifier = Field(
        description="Its column in the FOREIGN KEY referencing the policy's table (any one of "
        "the columns of a composite key). Its rows are deleted with their parent's rows, "
        "cascading or not; a child row a trigger keeps keeps its parent."
    )
    files: list[FileColumn] = Field(
        default_factory=list, description="File columns of the child ([[tables.children.files]])."
    )


class TablePolicy(Model):
    """Retention of an application table: rows older than `age` by `timestamp` go, children
    first, and the files their rows reference after commit (through the outbox)."""

    table: Identifier = Field(description="Table name, schema-qualified allowed (app.events).")
    timestamp: Identifier = Field(
        description="Column that ages the row: timestamptz, timestamp or date. Without an index "
        "starting with it, every batch scans the table (a warning gives the CREATE INDEX)."
    )
    age: str | None = Field(
        None,
        description="A duration (longer than zero, at most 100 years: 36500d), or "
        "`retention_days` / `log_retention_days` to follow those knobs; default: retention_days.",
    )
    key: Identifier | None = Field(
        None,
        description="Column identifying a row, unique alone or together with `timestamp` (as in "
        "a partitioned table's primary key); default: the table's single-column primary key.",
    )
    where: dict[str, Any] = Field(
        default_factory=dict,
        description="Structured filters, all of which must hold: column = value, or column = "
        "[values] (any of), cast to the column's type: strings (without NUL), finite numbers, "
        "integers within bigint's range, booleans. With filters, partitions are never "
        "dropped whole.",
    )
    children: list[ChildTable] = Field(
        default_factory=list,
        description="Tables referencing this one, handled first ([[tables.children]]); every "
        "foreign key to the table that neither cascades nor sets NULL must be listed.",
    )
    files: list[FileColumn] = Field(
        default_factory=list, description="File columns of the table ([[tables.files]])."
    )
    enabled: bool = Field(True, description="Whether `retention run` applies this policy.")
    archive: bool = Field(
        False,
        description="Write each batch of deleted rows (with their children's rows) to the "
        "archive before it commits ([archive]).",
    )
    archive_files: bool = Field(
        False,
        description="Copy every file the deleted rows reference (the policy's file columns and "
        "its children's that delete their files) into the archive, with its size and sha256, "
        "before the outbox drain unlinks it (content-addressed, under files/ in [archive] root). "
        "Needs `archive = true`; local roots only (not a `storage`).",
    )
    keep_last: Count = Field(
        None,
        description="Never delete the newest N rows (by `timestamp`, ties by `key`; per group "
        "with `per`), however old: with the age, a row goes when it is older than the age and "
        "not among the newest N. Not with `max_count`; partitions are then never dropped whole.",
    )
    max_count: Count = Field(
        None,
        description="Delete every row beyond the newest N (by `timestamp`, ties by `key`; per "
        "group with `per`), however young; with an `age` given too, rows older than it go as "
        "well (without one, only the count applies). Not with `keep_last`; partitions are then "
        "never dropped whole.",
    )
    per: list[Identifier] = Field(
        default_factory=list,
        description="Columns whose values group the rows `keep_last` / `max_count` count, e.g. "
        '["camera_id"]; a row with NULL in one of them is in no group (the age alone decides).',
    )

    @model_validator(mode="after")
    def _one_count(self) -> TablePolicy:
        _check_count(self.keep_last, self.max_count, self.per)
        return self

    @field_validator("archive_files")
    @classmethod
    def _files_archived_with_rows(cls, value: bool, info: ValidationInfo) -> bool:
        if not value:
            return value
        if not info.data.get("archive", False):
            raise ValueError(
                "archive_files is true but `archive` is not: the files of a policy's rows are "
                "archived with its rows; set archive = true too, or archive_files = false"
            )
        children: list[ChildTable] = info.data.get("children", [])
        configured: list[FileColumn] = info.data.get("files", [])
        stored = [
            column.column
            for columns in (configured, *(child.files for child in children))
            for column in columns
            if column.delete and column.storage is not None
        ]
        if stored:
            raise ValueError(
                f"archive_files copies files under a local root; the file column(s) "
                f"{', '.join(stored)} name a `storage`: set archive_files = false"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _models_to_tables(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        resolver = _model_resolver.get()
        if resolver is not None:
            return resolver(data)
        if _names_models(data):
            raise ValueError(
                "`model` and file `field`s name Django models, which only the Django app "
                "resolves: add 'retention.contrib.django' to INSTALLED_APPS, or give `table`, "
                "`column` and `root` instead"
            )
        return data

    @field_validator("age")
    @classmethod
    def _valid_age(cls, value: str | None) -> str | None:
        if value is None or value in ("retention_days", "log_retention_days"):
            return value
        durations.parse_duration(value)
        return value

    @field_validator("where")
    @classmethod
    def _plain_filters(cls, value: dict[str, Any]) -> dict[str, Any]:
        low, high = WHERE_INT_RANGE
        for column, wanted in value.items():
            try:
                _identifier(column)
            except ValueError as exc:
                raise ValueError(f"filter column {column!r}: {exc}") from None
            items = wanted if isinstance(wanted, list) else [wanted]
            if not items:
                raise ValueError(f"filter on {column!r} has an empty list")
            for item in items:
                if not isinstance(item, str | int | float | bool):
                    raise ValueError(
                        f"filter on {column!r}: {item!r} is not a plain value "
                        "(use a string, number or boolean, or a list of them)"
                    )
                if isinstance(item, str) and "\x00" in item:
                    raise ValueError(
                        f"filter on {column!r}: a value contains a NUL character (\\x00 / "
                        "\\u0000), which PostgreSQL text cannot hold: remove it"
                    )
                if isinstance(item, float) and not math.isfinite(item):
                    raise ValueError(
                        f"filter on {column!r}: {item!r} is not a finite number: give a number "
                        "(or quote it as a string to match a float column's 'NaN' / 'Infinity')"
                    )
                if isinstance(item, int) and not isinstance(item, bool) and not low <= item <= high:
                    raise ValueError(
                        f"filter on {column!r}: {item} does not fit a 64-bit integer (bigint: "
                        f"{low} to {high}); quote it as a string to compare with a numeric column"
                    )
        return value


class DirectoryPolicy(Model):
    """Age sweep of a directory that no table describes (exports, temp files, caches)."""

    root: Path = Field(description="Directory swept; nothing outside it is deleted.")
    age: Duration = Field(
        description="Files whose mtime is older than this go (a duration longer than zero, at "
        "most 100 years: 36500d)."
    )
    include: list[Glob] = Field(
        default_factory=lambda: ["*"],
        description="Globs of files considered, matched against the whole path relative to "
        "the root (`*` also matches `/`).",
    )
    exclude: list[Glob] = Field(default_factory=list, description="Globs of files always kept.")
    remove_empty_dirs: bool = Field(False, description="Remove directories left empty.")
    enabled: bool = Field(True, description="Whether `retention run` sweeps this directory.")

    @field_validator("root")
    @classmethod
    def _safe_root(cls, value: Path) -> Path:
        return roots.check_root(value)


ARCHIVE_FORMATS: tuple[str, ...] = ("jsonl.gz",)


class ArchivePolicy(Model):
    """Where archived rows go ([archive]): one file per deleted batch, under `root`; with
    `archive_files`, the copies of the rows' files too, under `root`/files/."""

    root: Path | None = Field(
        None,
        description="Local directory the archive files are written under (e.g. "
        "/var/lib/app/retention-archive), and the copies of archive_files under its files/; "
        "required when a policy says archive = true.",
    )
    format: str = Field(
        "jsonl.gz",
        description="File format: jsonl.gz (JSON Lines, gzip level 1: one self-describing line "
        "per row, readable with zcat and jq, types kept as JSON).",
    )

    @field_validator("root")
    @classmethod
    def _safe_root(cls, value: Path | None) -> Path | None:
        return None if value is None else roots.check_root(value)

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in ARCHIVE_FORMATS:
            raise ValueError(
                f"unknown archive format {value!r}: give one of {', '.join(ARCHIVE_FORMATS)}"
            )
        return value


class OrphanPolicy(Model):
    """Files under the table policies' roots that no row references."""

    enabled: bool = Field(False, description="Whether `retention run` sweeps orphaned files.")
    grace: Duration = Field(
        DEFAULT_ORPHAN_GRACE,
        description="Files younger than this (mtime) are never orphans (a duration longer than "
        "zero, at most 100 years: 36500d).",
    )
