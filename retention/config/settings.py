"""Every knob of procrastinate-retention: defaults, descriptions, validation, TOML and environment.

Sources, strongest first: keyword arguments, `RETENTION_*` environment variables (nested with
`__`, e.g. `RETENTION_JOBS__SUCCEEDED=1d`), the TOML file (`--config`, `RETENTION_CONFIG`, else
`./retention.toml` when it exists), the defaults below.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import difflib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
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

# Bounds of the knobs: a value outside them is refused when the settings load (exit 2), never
# found out in the middle of a run. Durations: positive, at most durations.MAX_DURATION.
MAX_BATCH_SIZE = 1_000_000
MAX_BATCH_SECONDS = 3600.0
MAX_RUN_SECONDS = 7 * 86400.0
MIN_LOCK_TIMEOUT = durations.ONE_MILLISECOND
MAX_LOCK_TIMEOUT = dt.timedelta(seconds=MAX_BATCH_SECONDS)
MAX_DAYS = durations.MAX_DAYS
WHERE_INT_RANGE = (-(2**63), 2**63 - 1)

ENV_PREFIX = "RETENTION_"
# Environment variables of ours that start with RETENTION_ and are not read by the settings
# model as a key: every other RETENTION_* variable must name a setting (a typo is an error).
NON_SETTING_VARIABLES: frozenset[str] = frozenset({"RETENTION_CONFIG", "RETENTION_HOME"})

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
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a valid SQL identifier: give a non-empty name")
    _refuse_nul(value)
    return value


def _refuse_nul(value: object) -> None:
    """PostgreSQL text and file paths cannot hold a NUL character: refused here, not mid-run."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(
            "contains a NUL character (\\x00 / \\u0000), which neither PostgreSQL nor a file "
            "path can hold: remove it"
        )


def _no_nul(value: Any) -> Any:
    """Strings, and strings in a list, of any key (nested tables check their own keys)."""
    for item in value if isinstance(value, list) else [value]:
        _refuse_nul(item)
    return value


def _no_bool(value: object) -> object:
    """`batch_size = true` is a mistake, not 1."""
    if isinstance(value, bool):
        raise ValueError(
            f"{str(value).lower()} is not a number: give a number in the range the "
            "configuration reference states"
        )
    return value


NotABool = BeforeValidator(_no_bool)


def _whole_number(low: int, high: int, unit: str, example: str) -> AfterValidator:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise ValueError(
                f"{value} is out of range: give a whole number of {unit} from {low} to {high}, "
                f"e.g. {example}"
            )
        return value

    return AfterValidator(check)


def _seconds(maximum: float, maximum_text: str, example: str) -> AfterValidator:
    def check(value: float) -> float:
        if not math.isfinite(value) or not 0 < value <= maximum:
            raise ValueError(
                f"{value!r} is out of range: give a finite number of seconds, more than 0 and "
                f"at most {maximum:g} ({maximum_text}), e.g. {example}"
            )
        return value

    return AfterValidator(check)


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

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_character(cls, value: Any) -> Any:
        return _no_nul(value)


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


class OrphanPolicy(Model):
    """Files under the table policies' roots that no row references."""

    enabled: bool = Field(False, description="Whether `retention run` sweeps orphaned files.")
    grace: Duration = Field(
        DEFAULT_ORPHAN_GRACE,
        description="Files younger than this (mtime) are never orphans (a duration longer than "
        "zero, at most 100 years: 36500d).",
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
    batch_size: Annotated[int, NotABool, _whole_number(1, MAX_BATCH_SIZE, "rows", "5000")] = Field(
        DEFAULT_BATCH_SIZE,
        description=f"Most rows deleted in one transaction: 1 to {MAX_BATCH_SIZE}.",
    )
    max_batch_seconds: Annotated[float, NotABool, _seconds(MAX_BATCH_SECONDS, "1 hour", "1.0")] = (
        Field(
            DEFAULT_MAX_BATCH_SECONDS,
            description="Target upper bound of one delete transaction, in seconds: more than 0, at "
            f"most {MAX_BATCH_SECONDS:g} (1 hour), and more than lock_timeout.",
        )
    )
    max_run_seconds: Annotated[float, NotABool, _seconds(MAX_RUN_SECONDS, "7 days", "600")] = Field(
        DEFAULT_MAX_RUN_SECONDS,
        description=f"Time budget of one run, in seconds: more than 0, at most {MAX_RUN_SECONDS:g} "
        "(7 days).",
    )
    lock_timeout: Duration = Field(
        DEFAULT_LOCK_TIMEOUT,
        description="Longest wait for a lock before a batch backs off: at least 1ms (PostgreSQL "
        "counts it in whole milliseconds, and 0 would mean no timeout at all), shorter than "
        "max_batch_seconds.",
    )
    delete_jobs: Literal["always", "successful", "never"] = Field(
        "never", description="Worker policy: delete jobs when they finish."
    )
    retention_days: Annotated[int, NotABool, _whole_number(1, MAX_DAYS, "days", "30")] = Field(
        DEFAULT_RETENTION_DAYS,
        validation_alias=AliasChoices("retention_days", "RETENTION_DAYS"),
        description=f"Default age, in days, of application tables: 1 to {MAX_DAYS} (100 years).",
    )
    log_retention_days: Annotated[int, NotABool, _whole_number(1, MAX_DAYS, "days", "7")] = Field(
        DEFAULT_LOG_RETENTION_DAYS,
        validation_alias=AliasChoices("log_retention_days", "LOG_RETENTION_DAYS"),
        description=f"Default age, in days, of log tables: 1 to {MAX_DAYS} (100 years).",
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
        check_environment(os.environ)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path.get()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul_character(cls, value: Any) -> Any:
        return _no_nul(value)

    @field_validator("lock_timeout")
    @classmethod
    def _lock_timeout_fits(cls, value: dt.timedelta, info: ValidationInfo) -> dt.timedelta:
        shown = durations.format_duration(value)
        if value < MIN_LOCK_TIMEOUT:
            raise ValueError(
                f"{shown} is shorter than 1ms: PostgreSQL counts lock_timeout in whole "
                "milliseconds and 0 would mean no timeout at all (a batch would wait forever "
                "behind a reader); give at least 1ms, e.g. 200ms"
            )
        if value >= MAX_LOCK_TIMEOUT:
            raise ValueError(
                f"{shown} is too long: lock_timeout must be shorter than max_batch_seconds, "
                f"which is at most {MAX_BATCH_SECONDS:g} (1 hour); give e.g. 200ms"
            )
        batch = info.data.get("max_batch_seconds")
        if batch is not None and value.total_seconds() >= batch:
            raise ValueError(
                f"lock_timeout ({shown}) must be shorter than max_batch_seconds ({batch:g}): "
                "lower lock_timeout or raise max_batch_seconds"
            )
        return value

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
    """Load and validate the settings, or raise ConfigError naming every bad key, where its value
    came from (argument, environment variable or TOML file) and the value unless it may be a
    secret."""
    path = config_path(config)
    check_environment(os.environ)
    token = _toml_path.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise errors.ConfigError(describe(exc, path, overrides)) from None
    except SettingsError as exc:
        raise errors.ConfigError(_unparsable_environment(exc)) from None
    except ValueError as exc:  # the TOML file's syntax
        where = f" in {path}" if path else ""
        raise errors.ConfigError(f"invalid configuration{where}: {exc}") from None
    finally:
        _toml_path.reset(token)


# ---------------------------------------------------------------------------------------------
# Environment variables: every RETENTION_* variable must be a setting (or one of ours).


def environment_names() -> dict[str, tuple[str, ...]]:
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

    walk(Settings, ENV_PREFIX, ())
    return names


def check_environment(environ: Mapping[str, str]) -> None:
    """Raise ConfigError for any RETENTION_* variable that is neither a setting nor one of
    NON_SETTING_VARIABLES, naming it and the closest valid name (its value is never shown)."""
    known = environment_names()
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


def _environment_variable(path: tuple[str, ...], environ: Mapping[str, str]) -> str | None:
    """The set environment variable a value at `path` (field names) came from, if any."""
    upper = {name.upper(): name for name in environ}
    names = environment_names()
    for size in range(len(path), 0, -1):
        for env, key_path in names.items():
            if key_path == path[:size] and env in upper:
                return upper[env]
    return None


def _unparsable_environment(exc: SettingsError) -> str:
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else None
    variable = _environment_variable((field,), os.environ) if field else None
    if variable is None:
        return f"invalid configuration: {exc}"
    return (
        f"invalid configuration:\n  - {field}: not valid JSON (from environment variable "
        f"{variable}; a table or list is given as JSON in an environment variable, e.g. "
        f'{ENV_PREFIX}JOBS=\'{{"succeeded": "1d"}}\')'
    )


# ---------------------------------------------------------------------------------------------
# Validation errors, as a user reads them.

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
    exc: ValidationError, path: Path | None, overrides: Mapping[str, Any] | None = None
) -> str:
    """One line per problem: the key, where its value came from, what is wrong, the value."""
    toml_data = _read_toml(path)
    lines = ["invalid configuration:"]
    for error in exc.errors():
        loc = _field_path(error["loc"])
        origin = _origin(loc, overrides or {}, os.environ, toml_data, path)
        lines.append(f"  - {_problem(error, loc, origin)}")
    return "\n".join(lines)


def _read_toml(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except (OSError, ValueError):
        return None


def _field_path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """The error's location with an alias (RETENTION_DAYS, DATABASE_URL) as its field name."""
    if not loc or not isinstance(loc[0], str):
        return loc
    for name, field in Settings.model_fields.items():
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


def _aliases(loc: tuple[int | str, ...]) -> list[tuple[int | str, ...]]:
    """The location under each name its top-level key may be written as."""
    forms = [loc]
    field = Settings.model_fields.get(str(loc[0])) if loc else None
    if field is not None and isinstance(field.validation_alias, AliasChoices):
        forms += [(str(choice), *loc[1:]) for choice in field.validation_alias.choices]
    return forms


def _origin(
    loc: tuple[int | str, ...],
    overrides: Mapping[str, Any],
    environ: Mapping[str, str],
    toml_data: dict[str, Any] | None,
    path: Path | None,
) -> str | None:
    """Where the value at `loc` came from, strongest source first (as the settings merge them):
    an argument, an environment variable, the TOML file, else the default (None: no key)."""
    if not loc:
        return None
    if any(_contains(dict(overrides), form) for form in _aliases(loc)):
        return "an argument"
    names = tuple(part for part in _until_index(loc) if isinstance(part, str))
    variable = _environment_variable(names, environ)
    if variable is not None:
        return f"environment variable {variable}"
    if toml_data is not None and any(_contains(toml_data, form) for form in _aliases(loc)):
        return f"the file {path}"
    return "the default"


def _until_index(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """An environment variable names a key path down to the first list (a list is JSON)."""
    for position, part in enumerate(loc):
        if isinstance(part, int):
            return loc[:position]
    return loc


def _key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _problem(error: Any, loc: tuple[int | str, ...], origin: str | None) -> str:
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
        close = _closest_key(loc)
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


def _closest_key(loc: tuple[int | str, ...]) -> str | None:
    """For an unknown key, the closest key of its table (e.g. database_url for databse_url)."""
    model: type[BaseModel] = Settings
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
