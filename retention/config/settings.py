"""Every knob of procrastinate-retention: defaults, descriptions, validation, TOML and environment.

Sources, strongest first: keyword arguments, `RETENTION_*` environment variables (nested with
`__`, e.g. `RETENTION_JOBS__SUCCEEDED=1d`), the TOML file (`--config`, `RETENTION_CONFIG`, else
`./retention.toml` when it exists), the defaults below.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from retention import errors
from retention.config import dsn, durations, environment, problems
from retention.config.fields import (
    MAX_BATCH_SECONDS,
    MAX_BATCH_SIZE,
    MAX_DAYS,
    MAX_LOCK_TIMEOUT,
    MAX_PAUSE,
    MAX_REPLICATION_LAG,
    MAX_RUN_SECONDS,
    MIN_LOCK_TIMEOUT,
    Cron,
    Duration,
    Identifier,
    Model,
    NotABool,
    _no_nul,
    _seconds,
    _whole_number,
)
from retention.config.policies import (
    DEFAULT_JOBS,
    ArchivePolicy,
    DirectoryPolicy,
    JobsPolicy,
    OrphanPolicy,
    TablePolicy,
)

DEFAULT_SCHEDULE = "0 3 * * *"
DEFAULT_QUEUE = "retention"
DEFAULT_BATCH_SIZE = 5000
DEFAULT_MAX_BATCH_SECONDS = 1.0
DEFAULT_MAX_RUN_SECONDS = 600.0
DEFAULT_LOCK_TIMEOUT = dt.timedelta(milliseconds=200)
DEFAULT_RETENTION_DAYS = 30
DEFAULT_LOG_RETENTION_DAYS = 7
CONFIG_FILE_NAME = "retention.toml"

_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar("toml_path", default=None)
# Settings given as a mapping instead of a TOML file (Django's RETENTION setting).
_data: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("data", default=None)


DEFAULT_MAINTENANCE_SHARE = 0.3
DEFAULT_REINDEX_BLOAT_RATIO = 0.3


class MaintenancePolicy(Model):
    """After a run that deleted a large share of the jobs ([maintenance]): off by default."""

    reindex: bool = Field(
        False,
        description="REINDEX INDEX CONCURRENTLY the indexes of procrastinate_jobs and "
        "procrastinate_events whose estimated bloat is at least reindex_bloat_ratio.",
    )
    reindex_bloat_ratio: Annotated[float, NotABool] = Field(
        DEFAULT_REINDEX_BLOAT_RATIO,
        ge=0.0,
        le=1.0,
        description="Estimated share of an index that is free space (pgstattuple's pgstatindex "
        "when installed, else an estimate from pg_class): 0.0 to 1.0.",
    )
    vacuum: bool = Field(
        False, description="VACUUM (ANALYZE) procrastinate_jobs and procrastinate_events."
    )
    min_deleted_share: Annotated[float, NotABool] = Field(
        DEFAULT_MAINTENANCE_SHARE,
        gt=0.0,
        le=1.0,
        description="The maintenance runs when the run deleted at least this share of the jobs "
        "there were (deleted / (deleted + left)): above 0.0, at most 1.0.",
    )


class Settings(BaseSettings):
    """procrastinate-retention settings."""

    model_config = SettingsConfigDict(
        env_prefix=environment.ENV_PREFIX,
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
    pause_between_batches: Duration | None = Field(
        None,
        description="Pause before each delete batch but a run's first, counted from the end of "
        "the previous one, plus a random 0 to 25% of it (jitter), e.g. 200ms: more than 0, at "
        "most 1h, shorter than max_run_seconds; unset: no pause. A dry run does not pause.",
    )
    max_replication_lag: Duration | None = Field(
        None,
        description="Before each delete batch, wait while a standby in pg_stat_replication "
        "replays further behind than this (e.g. 30s), up to the run's time budget; then the run "
        "stops (`replica lag`) and the next one goes on: more than 0, at most 1d; unset: no "
        "check. The role needs pg_read_all_stats (or pg_monitor) to see the lag.",
    )
    jobs_path: Literal["auto", "normal"] = Field(
        "auto",
        description='How job batches delete: "auto" takes the set-based path (triggers and '
        "foreign-key actions off for the batch's transaction, their work done in bulk) when the "
        "role may set session_replication_role and Procrastinate's tables have exactly the "
        'triggers and foreign keys Procrastinate defines, else the normal path; "normal" '
        "always takes the normal path.",
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
    archive: ArchivePolicy = Field(
        default_factory=ArchivePolicy, description="Archive before delete ([archive])."
    )
    maintenance: MaintenancePolicy = Field(
        default_factory=MaintenancePolicy,
        description="REINDEX and VACUUM after a large prune ([maintenance]).",
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
        environment.check(os.environ, cls)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _toml_path.get()
        data = _data.get()
        if data is not None:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=data))
        elif path is not None:
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

    @field_validator("pause_between_batches")
    @classmethod
    def _pause_fits(cls, value: dt.timedelta | None, info: ValidationInfo) -> dt.timedelta | None:
        if value is None:
            return value
        shown = durations.format_duration(value)
        if value > MAX_PAUSE:
            raise ValueError(
                f"{shown} is too long: a pause between batches is at most 1h; give e.g. 200ms"
            )
        budget = info.data.get("max_run_seconds")
        if budget is not None and value.total_seconds() >= budget:
            raise ValueError(
                f"pause_between_batches ({shown}) must be shorter than max_run_seconds "
                f"({budget:g}): a run would pause past its time budget after one batch; lower "
                "the pause or raise max_run_seconds"
            )
        return value

    @field_validator("max_replication_lag")
    @classmethod
    def _lag_fits(cls, value: dt.timedelta | None) -> dt.timedelta | None:
        if value is not None and value > MAX_REPLICATION_LAG:
            raise ValueError(
                f"{durations.format_duration(value)} is too long: max_replication_lag is at "
                "most 1d; give e.g. 30s"
            )
        return value

    @model_validator(mode="after")
    def _archive_has_a_root(self) -> Settings:
        if self.archive.root is not None:
            return self
        named = ["jobs.archive"] if self.jobs.archive else []
        named += [f"jobs.rules[{i}].archive" for i, r in enumerate(self.jobs.rules) if r.archive]
        named += [f"tables[{i}].archive" for i, t in enumerate(self.tables) if t.archive]
        if named:
            raise ValueError(
                f"{', '.join(named)} is true but [archive] has no root: set archive.root to the "
                "local directory the archive files go to (e.g. /var/lib/app/retention-archive)"
            )
        return self

    @model_validator(mode="after")
    def _archive_outside_every_root(self) -> Settings:
        """The archive root may not overlap a root retention deletes from (a file column's,
        which the outbox drain and the orphan sweep delete under, or a directory sweep's):
        either one inside the other, as written or once symlinks are resolved."""
        archive = self.archive.root
        if archive is None:
            return self
        named: list[tuple[str, Path]] = [
            (f"directories[{i}].root", d.root) for i, d in enumerate(self.directories)
        ]
        for i, table in enumerate(self.tables):
            columns = [(f"tables[{i}].files[{k}]", c) for k, c in enumerate(table.files)]
            for j, child in enumerate(table.children):
                columns += [
                    (f"tables[{i}].children[{j}].files[{k}]", c) for k, c in enumerate(child.files)
                ]
            named += [(f"{where}.root", c.root) for where, c in columns if c.root is not None]
        spellings = {archive, Path(os.path.realpath(archive))}
        for where, root in named:
            for other in {root, Path(os.path.realpath(root))}:
                if any(a.is_relative_to(other) or other.is_relative_to(a) for a in spellings):
                    raise ValueError(
                        f"archive.root {str(archive)!r} overlaps {where} {str(root)!r}: retention "
                        "deletes files under that root, and could delete the archive's (or the "
                        "archive would hold the root's files); give an archive root outside "
                        "every root, e.g. /var/lib/app/retention-archive"
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


def load(
    config: str | os.PathLike[str] | None = None,
    *,
    data: dict[str, Any] | None = None,
    data_origin: str = "the settings given",
    **overrides: Any,
) -> Settings:
    """Load and validate the settings, or raise ConfigError naming every bad key, where its value
    came from (argument, environment variable or TOML file) and the value unless it may be a
    secret. `data` (e.g. Django's RETENTION setting, called `data_origin` in errors) takes the
    place of the TOML file."""
    path = None if data is not None else config_path(config)
    environment.check(os.environ, Settings)
    token = _toml_path.set(path)
    data_token = _data.set(data)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        given = (data, data_origin) if data is not None else None
        raise errors.ConfigError(
            problems.describe(exc, path, Settings, overrides, given=given)
        ) from None
    except SettingsError as exc:
        raise errors.ConfigError(environment.unparsable(exc, Settings)) from None
    except ValueError as exc:  # the TOML file's syntax
        where = f" in {path}" if path else ""
        raise errors.ConfigError(f"invalid configuration{where}: {exc}") from None
    finally:
        _data.reset(data_token)
        _toml_path.reset(token)
