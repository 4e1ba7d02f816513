"""Every knob of procrastinate-retention: defaults, descriptions, validation, TOML and environment.

Sources, strongest first: keyword arguments, `RETENTION_*` environment variables (nested with
`__`, e.g. `RETENTION_JOBS__SUCCEEDED=1d`), the TOML file (`--config`, `RETENTION_CONFIG`, else
`./retention.toml` when it exists), the defaults below.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from retention import errors
from retention.config import dsn, durations, globs, roots

FINAL_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled", "aborted")
UNFINISHED_STATUSES: tuple[str, ...] = ("todo", "doing")

DEFAULT_SCHEDULE = "0 3 * * *"
DEFAULT_QUEUE = "retention"
DEFAULT_BATCH_SIZE = 5000
DEFAULT_MAX_BATCH_SECONDS = 1.0
DEFAULT_MAX_RUN_SECONDS = 600.0
DEFAULT_LOCK_TIMEOUT = dt.timedelta(milliseconds=200)
DEFAULT_RETENTION_DAYS = 30
DEFAULT_LOG_RETENTION_DAYS = 7
DEFAULT_JOB_AGES: dict[str, dt.timedelta] = {
    "succeeded": dt.timedelta(days=3),
    "failed": dt.timedelta(days=30),
    "cancelled": dt.timedelta(days=7),
    "aborted": dt.timedelta(days=7),
}
DEFAULT_ORPHAN_GRACE = dt.timedelta(hours=1)
CONFIG_FILE_NAME = "retention.toml"

_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("toml_path", default=None)


def _duration(value: object) -> dt.timedelta:
    return durations.parse_duration(value)


def _age(value: object) -> dt.timedelta | None:
    if value is None or (isinstance(value, str) and value.strip().lower() == "forever"):
        return None
    return durations.parse_duration(value)


def _cron(value: object) -> str:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise ValueError(
            f"{value!r} is not a valid cron expression: five fields, minute hour day month "
            "weekday, e.g. '0 3 * * *' (every day at 03:00)"
        )
    return value


def _glob(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a glob: give a non-empty string such as 'app.*'")
    globs.to_regex(value)
    return value


def _identifier(value: object) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"{value!r} is not a valid SQL identifier")
    return value


Duration = Annotated[
    dt.timedelta,
    BeforeValidator(_duration),
    PlainSerializer(durations.format_duration, return_type=str),
]
Age = Annotated[
    dt.timedelta | None,
    BeforeValidator(_age),
    PlainSerializer(durations.format_duration, return_type=str),
]
Cron = Annotated[str, BeforeValidator(_cron)]
Glob = Annotated[str, BeforeValidator(_glob)]
Identifier = Annotated[str, BeforeValidator(_identifier)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobRule(Model):
    """An override for jobs whose queue and/or task match shell-style globs."""

    queue: Glob | None = Field(None, description="Glob on the job's queue name.")
    task: Glob | None = Field(None, description="Glob on the job's task name.")
    succeeded: Age = Field(None, description="Age of succeeded jobs this rule keeps.")
    failed: Age = Field(None, description="Age of failed jobs this rule keeps.")
    cancelled: Age = Field(None, description="Age of cancelled jobs this rule keeps.")
    aborted: Age = Field(None, description="Age of aborted jobs this rule keeps.")

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
    aborted 7d."""

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

    def age_for(self, status: str, queue: str, task: str) -> dt.timedelta | None:
        """The reference semantics, in Python: what the SQL in jobs.py computes."""
        age: dt.timedelta | None = getattr(self, status)
        for rule in self.rules:
            sets, rule_age = rule.age(status)
            if sets and globs.matches(rule.queue, queue) and globs.matches(rule.task, task):
                age = rule_age
        return age


DEFAULT_JOBS = JobsPolicy()


class FileColumn(Model):
    """A column holding paths of files, relative to `root` (or absolute inside it)."""

    column: Identifier = Field(
        description="Text column holding the file path; NULL or empty means no file."
    )
    root: Path = Field(
        description="Storage root the paths live under (relative to it, or absolute inside it); "
        "a path resolving outside (.., symlinks) is refused, never deleted."
    )
    delete: bool = Field(
        True,
        description="Delete the files with their rows (queued in the file outbox in the rows' "
        "transaction, unlinked after commit); false keeps them on disk.",
    )

    @field_validator("root")
    @classmethod
    def _safe_root(cls, value: Path) -> Path:
        return roots.check_root(value)


class ChildTable(Model):
    """Rows of another table that reference the policy's rows and go before them."""

    table: Identifier = Field(description="Child table, schema-qualified allowed.")
    column: Identifier = Field(
        description="Its column in the FOREIGN KEY referencing the policy's table (any one of "
        "the columns of a composite key). With ON DELETE CASCADE the child rows are left to the "
        "cascade, their files are still queued first."
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
        description="A duration, or `retention_days` / `log_retention_days` to follow those "
        "knobs; default: retention_days.",
    )
    key: Identifier | None = Field(
        None,
        description="Column identifying a row, unique alone or together with `timestamp` (as in "
        "a partitioned table's primary key); default: the table's single-column primary key.",
    )
    where: dict[str, Any] = Field(
        default_factory=dict,
        description="Structured filters, all of which must hold: column = value, or column = "
        "[values] (any of), cast to the column's type. With filters, partitions are never "
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
        for column, wanted in value.items():
            _identifier(column)
            items = wanted if isinstance(wanted, list) else [wanted]
            if not items:
                raise ValueError(f"filter on {column!r} has an empty list")
            for item in items:
                if not isinstance(item, str | int | float | bool):
                    raise ValueError(
                        f"filter on {column!r}: {item!r} is not a plain value "
                        "(use a string, number or boolean, or a list of them)"
                    )
        return value


class DirectoryPolicy(Model):
    """Age sweep of a directory that no table describes (exports, temp files, caches)."""

    root: Path = Field(description="Directory swept; nothing outside it is deleted.")
    age: Duration = Field(description="Files whose mtime is older than this go.")
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


class OrphanPolicy(Model):
    """Files under the table policies' roots that no row references."""

    enabled: bool = Field(False, description="Whether `retention run` sweeps orphaned files.")
    grace: Duration = Field(
        DEFAULT_ORPHAN_GRACE, description="Files younger than this (mtime) are never orphans."
    )


class Settings(BaseSettings):
    """procrastinate-retention settings."""

    model_config = SettingsConfigDict(
        env_prefix="RETENTION_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("database_url", "DATABASE_URL"),
        description="libpq URL of the database; else PG* variables; else the embedded server.",
    )
    home: Path | None = Field(
        None,
        validation_alias=AliasChoices("RETENTION_HOME"),
        description="Directory of the embedded server's data (default: user data dir).",
    )
    schedule: Cron = Field(DEFAULT_SCHEDULE, description="Cron of the periodic retention run.")
    queue: Identifier = Field(DEFAULT_QUEUE, description="Procrastinate queue of the tasks.")
    batch_size: int = Field(
        DEFAULT_BATCH_SIZE, gt=0, description="Most rows deleted in one transaction."
    )
    max_batch_seconds: float = Field(
        DEFAULT_MAX_BATCH_SECONDS,
        gt=0,
        description="Target upper bound of one delete transaction, in seconds.",
    )
    max_run_seconds: float = Field(
        DEFAULT_MAX_RUN_SECONDS, gt=0, description="Time budget of one run, in seconds."
    )
    lock_timeout: Duration = Field(
        DEFAULT_LOCK_TIMEOUT, description="Longest wait for a lock before a batch backs off."
    )
    delete_jobs: Literal["always", "successful", "never"] = Field(
        "never", description="Worker policy: delete jobs when they finish."
    )
    retention_days: int = Field(
        DEFAULT_RETENTION_DAYS,
        gt=0,
        validation_alias=AliasChoices("retention_days", "RETENTION_DAYS"),
        description="Default age, in days, of application tables.",
    )
    log_retention_days: int = Field(
        DEFAULT_LOG_RETENTION_DAYS,
        gt=0,
        validation_alias=AliasChoices("log_retention_days", "LOG_RETENTION_DAYS"),
        description="Default age, in days, of log tables.",
    )
    jobs: JobsPolicy = Field(DEFAULT_JOBS, description="Job retention ([jobs]).")
    tables: list[TablePolicy] = Field(
        default_factory=list, description="Application table policies ([[tables]])."
    )
    directories: list[DirectoryPolicy] = Field(
        default_factory=list, description="Directory age sweeps ([[directories]])."
    )
    orphans: OrphanPolicy = Field(
        default_factory=OrphanPolicy, description="Orphaned-file sweep ([orphans])."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _lock_timeout_fits(self) -> Settings:
        if self.lock_timeout.total_seconds() >= self.max_batch_seconds:
            raise ValueError(
                f"lock_timeout ({durations.format_duration(self.lock_timeout)}) must be shorter "
                f"than max_batch_seconds ({self.max_batch_seconds:g})"
            )
        return self

    def table_age(self, policy: TablePolicy) -> dt.timedelta:
        if policy.age is None or policy.age == "retention_days":
            return dt.timedelta(days=self.retention_days)
        if policy.age == "log_retention_days":
            return dt.timedelta(days=self.log_retention_days)
        return durations.parse_duration(policy.age)

    def public(self) -> dict[str, Any]:
        """What a run records: every knob, the database location redacted."""
        data = self.model_dump(mode="json", exclude={"database_url"})
        data["database_url"] = dsn.redact(self.database_url) if self.database_url else None
        return data


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """Which TOML file applies: --config, else RETENTION_CONFIG, else ./retention.toml."""
    if explicit:
        path = Path(explicit)
    elif os.environ.get("RETENTION_CONFIG"):
        path = Path(os.environ["RETENTION_CONFIG"])
    else:
        default = Path.cwd() / CONFIG_FILE_NAME
        return default if default.is_file() else None
    if not path.is_file():
        raise errors.ConfigError(
            f"config file {str(path)!r} does not exist: check --config / RETENTION_CONFIG"
        )
    return path


def load(config: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load and validate the settings, or raise ConfigError naming every bad key and value."""
    path = config_path(config)
    token = _toml_path.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise errors.ConfigError(describe(exc, path)) from None
    except ValueError as exc:
        where = f" in {path}" if path else ""
        raise errors.ConfigError(f"invalid configuration{where}: {exc}") from None
    finally:
        _toml_path.reset(token)


def describe(exc: ValidationError, path: Path | None) -> str:
    where = f" ({path})" if path else ""
    lines = [f"invalid configuration{where}:"]
    lines.extend(f"  - {line}" for line in _problems(exc))
    return "\n".join(lines)


def _problems(exc: ValidationError) -> Iterator[str]:
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = re.sub(r"^(Value|Assertion) error, ", "", error["msg"])
        if error["type"] == "extra_forbidden":
            hint = "check the spelling; see the configuration reference"
            if error["loc"][:1] == ("jobs",):
                hint = (
                    "job ages are set per final status: succeeded, failed, cancelled, aborted; "
                    "todo and doing jobs are never deleted"
                )
            name = key.rsplit(".", 1)[-1]
            yield f"{key}: unknown key (got {name} = {error.get('input')!r}; {hint})"
            continue
        value = error.get("input")
        if "database_url" in key:
            value = "(redacted)"
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        yield f"{key}: {message}{shown}"
